"""Shared code for the inpainting-localization pipeline: data layout, models, losses, metrics."""
