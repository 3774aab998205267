"""Commands run by hand, outside the pipeline: `python -m tools.<name>`."""
