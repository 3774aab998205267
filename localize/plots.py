"""PNG figures a reader can open anywhere (DVC's HTML plots need a web connection)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from localize.atomic import atomic_file


def _pyplot():
    """matplotlib, imported on first use: `predict` needs only `overlay`, and a lighter process."""
    import matplotlib

    matplotlib.use("Agg")  # no display on build machines
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    # No software tag in the metadata: identical runs give identical bytes.
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)


def training_curves(histories: dict[str, list[dict]], path: Path) -> None:
    fig, (ax_loss, ax_iou, ax_real) = _pyplot().subplots(1, 3, figsize=(15, 4))
    for split, rows in histories.items():
        epochs = [r["epoch"] for r in rows]
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], label=split)
        # Weak supervision selects without masks: its rows have no IoU, drawn as gaps.
        ax_iou.plot(epochs, [r.get("valid_iou", float("nan")) for r in rows], label=split)
        ax_real.plot(epochs, [r.get("valid_real_clean", float("nan")) for r in rows], label=split)
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    ax_iou.set(title="valid IoU (training generators' fakes)", xlabel="epoch", ylabel="IoU", ylim=(0, 1))
    ax_real.set(title="valid real faces with no pixel flagged", xlabel="epoch", ylabel="share", ylim=(0, 1))
    ax_iou.legend(fontsize=7, ncol=2)
    _save(fig, path)


def heatmap(table: dict[str, dict[str, float]], columns: list[str], path: Path, title: str) -> None:
    rows = list(table)
    # ×100, as the cells' labels and every table: the colour bar reads on the same scale.
    values = 100 * np.array([[table[r].get(c, np.nan) for c in columns] for r in rows], dtype=float)
    fig, ax = _pyplot().subplots(figsize=(1.2 * len(columns) + 2.5, 0.45 * len(rows) + 1.5))
    im = ax.imshow(values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("test generator")
    ax.set_ylabel("trained on")
    ax.set_title(title)
    for i in range(len(rows)):
        for j in range(len(columns)):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center",
                        color="white" if values[i, j] < 60 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, label="IoU ×100")
    _save(fig, path)


def overlay(image: np.ndarray, mask: np.ndarray, color=(255, 0, 0), alpha: float = 0.5) -> np.ndarray:
    """Tint the pixels where `mask` (bool or [0,1] float) is set."""
    m = mask.astype(np.float32)[..., None] * alpha
    return (image * (1 - m) + np.array(color, np.float32) * m).astype(np.uint8)


def grid(rows: list[list[np.ndarray]], titles: list[str], path: Path, suptitle: str) -> None:
    """A grid of images, one list per row, with column titles."""
    n_rows, n_cols = len(rows), len(titles)
    fig, axes = _pyplot().subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.6 * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            ax = axes[i][j]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255 if img.dtype == np.uint8 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=7)
    fig.suptitle(suptitle, fontsize=9)
    _save(fig, path)


# The strength at which each perturbation does nothing: where the clean score is marked.
_IDENTITY = {"jpeg": 100.0, "downscale": 1.0, "blur": 0.0, "noise": 0.0}


def robustness_curves(kind: str, strengths: list[float], curves: dict[str, list[float]],
                      clean: dict[str, float], path: Path) -> None:
    """IoU against a perturbation's strength, one line per model, its clean score marked at the
    strength that changes nothing (and as a dotted level)."""
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    identity = _IDENTITY.get(kind)
    for model, ious in curves.items():
        (line,) = ax.plot(strengths, ious, marker="o", label=model)
        ax.axhline(clean[model], color=line.get_color(), linestyle=":", linewidth=0.8)
        if identity is not None:
            ax.plot([identity], [clean[model]], marker="*", markersize=11, color=line.get_color())
    if kind in ("jpeg", "downscale"):
        ax.invert_xaxis()  # left to right: stronger degradation, as on the blur and noise plots
    ax.set(title=f"{kind}: IoU against strength (star and dotted line: clean)", xlabel=kind, ylabel="IoU",
           ylim=(0, 1))
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)
