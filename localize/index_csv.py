"""data/index.csv, the index stage's output: one row per image, its columns defined once here."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

INDEX_COLUMNS = ("generator", "split", "id", "image", "mask", "width", "height", "fake_fraction")

# Characters a name (an id, a generator) may not hold: it could not be stored one per line
# (ids.txt) or written as text. Controls (newline, tab...), line and paragraph separators,
# and the undecodable bytes that os.fsdecode keeps in a name as lone surrogates.
_UNSTORABLE = ("Cc", "Zl", "Zp", "Cs")


def unstorable(name: str) -> bool:
    """True if `name` holds a character that cannot be stored one per line as text."""
    return any(unicodedata.category(c) in _UNSTORABLE for c in name)


def printable(text: str) -> str:
    """`text` on one line, as valid text: the characters `unstorable` refuses are escaped (\\n, \\u2028, \\xff)."""
    out = []
    for c in text:
        category = unicodedata.category(c)
        if category == "Cs":  # an undecodable byte, as os.fsdecode keeps it
            out.append(f"\\x{ord(c) & 0xFF:02x}")
        elif category in _UNSTORABLE:
            out.append(c.encode("unicode_escape").decode("ascii"))
        else:
            out.append(c)
    return "".join(out)


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
