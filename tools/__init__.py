"""Tools around the pipeline, run by hand (`python -m tools.<name>`), never by dvc.yaml: predict on
your own photos, rerun a reference recipe, summarise a seed spread, write the docs' tables from
metrics/ (sync_docs), screenshot the report (report_screenshot; browser: headless Chromium)."""

import os

# As for the stages (stages/__init__.py): idle OpenMP threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
