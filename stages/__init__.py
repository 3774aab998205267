"""Pipeline stages, each run as `python -m stages.<name>` from dvc.yaml."""
