"""data/index.csv, the index stage's output: one row per image, its columns defined once here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

INDEX_COLUMNS = ("generator", "split", "id", "image", "mask", "width", "height", "fake_fraction")


def read_index(path: str | Path) -> pd.DataFrame:
    """data/index.csv as a DataFrame, ids kept as strings (Dolos ids look like numbers: 000123)."""
    import pandas as pd  # only the stages that read the index pay for pandas

    path = Path(path)
    text_columns = {c: str for c in ("generator", "split", "id", "image", "mask")}
    try:
        frame = pd.read_csv(path, dtype=text_columns, keep_default_na=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: index not found; run the index stage first") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable index CSV ({e})") from None
    missing = [c for c in INDEX_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; "
                         f"expected {', '.join(INDEX_COLUMNS)}")
    return frame[list(INDEX_COLUMNS)]
