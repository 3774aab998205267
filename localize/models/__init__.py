"""Model registry: `model.arch` in params.yaml picks one of ARCHS."""

from __future__ import annotations

from torch import nn

from localize.models.patches import PatchForensics
from localize.models.unet_hp import HighPassUNet
from localize.models.unet_res import ResUNet
from localize.models.unet_seed import SeedUNet
from localize.params import ARCHS, ModelParams

# Architectures trained on their own patch map (Patch Forensics): forward(x, grid=True) returns it.
PATCH_ARCHS = ("patches",)


def build_model(p: ModelParams) -> nn.Module:
    if p.arch == "unet-seed":
        return SeedUNet(p.width, p.dropout)
    if p.arch == "unet-hp":
        return HighPassUNet(p.width, p.dropout, context=p.context)
    if p.arch == "unet-tex":
        return HighPassUNet(p.width, p.dropout, residual_stats=True, pixel_head=True, context=p.context)
    if p.arch == "unet-tex-inputs":  # unet-tex without its per-pixel head: the statistics as inputs only
        return HighPassUNet(p.width, p.dropout, residual_stats=True, context=p.context)
    if p.arch == "unet-res-srm":
        return ResUNet(p.width, dropout=p.dropout, srm=True)
    if p.arch == "unet-res":
        return ResUNet(p.width, dropout=p.dropout, srm=False)
    if p.arch == "patches":  # Chai et al.'s fixed widths and no dropout: model.width and model.dropout do not apply
        return PatchForensics()
    raise ValueError(f"unknown model.arch {p.arch!r}; choose one of: {', '.join(ARCHS)}")
