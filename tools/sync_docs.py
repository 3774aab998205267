"""Keep every table that README.md and docs/*.md show equal to the metrics files it comes from.

    python -m tools.sync_docs           # rewrite every marked block from metrics/
    python -m tools.sync_docs --check   # exit 1, naming each stale block, if any differs (a test runs this)

A block is written between two marker comments, which Markdown viewers do not show:

    <!-- table:metrics/table.md -->
    ...the file's text, written by this command...
    <!-- /table -->

What follows `table:` is a file path from the repository root (its whole text is included), or
`compare FOLDER ...` (the recipes' headlines side by side, as `reference --compare` prints them),
or `robustness-means FOLDER ...` (each recipe's mean IoU per perturbation, from its
robustness.json, ×100). Nothing between the markers is typed by hand: after `dvc repro` (or a
reference run), run this command and commit.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- table:(?P<spec>[^>]+?) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def documents(root: Path = REPO) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _compare(folders: list[Path]) -> str:
    from tools.reference import compare

    return compare(folders)


def _summary_file(folder: Path, name: str) -> Path:
    """`<folder>/results/<name>` for a reference recipe, `<folder>/<name>` for the default's metrics/."""
    return folder / "results" / name if (folder / "results" / name).exists() else folder / name


def robustness_means(folders: list[Path], root: Path) -> str:
    rows = []
    for folder in folders:
        path = _summary_file(root / folder, "robustness.json")
        means = json.loads(path.read_text())["mean_iou"]
        name = "default (`dvc repro`)" if folder.name == "metrics" else f"`{folder.name}`"
        rows.append((name, means))
    columns = list(dict.fromkeys(k for _, m in rows for k in m))
    lines = ["| recipe | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{100 * m[c]:.1f}" if c in m else "" for c in columns) + " |"
              for name, m in rows]
    return "\n".join(lines) + "\n"


def generate(spec: str, root: Path = REPO) -> str:
    """The text of one block, from its spec."""
    words = spec.split()
    if words[0] == "compare":
        return _compare([root / w for w in words[1:]])
    if words[0] == "robustness-means":
        return robustness_means([Path(w) for w in words[1:]], root)
    path = root / spec.strip()
    if not path.is_file():
        raise FileNotFoundError(f"table:{spec}: {path} not found")
    return path.read_text(encoding="utf-8")


def render(text: str, root: Path = REPO) -> str:
    """`text` with every block rewritten from its spec."""
    return BLOCK.sub(lambda m: m.group(1) + generate(m.group("spec"), root).strip("\n") + "\n" + m.group(4), text)


def stale(root: Path = REPO) -> list[str]:
    """'file: table:spec' for each block whose text differs from what its spec generates."""
    out = []
    for doc in documents(root):
        for m in BLOCK.finditer(doc.read_text(encoding="utf-8")):
            if m.group("body") != generate(m.group("spec"), root).strip("\n") + "\n":
                out.append(f"{doc.relative_to(root)}: table:{m.group('spec')}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = ap.parse_args(argv)
    try:
        if args.check:
            bad = stale()
            for line in bad:
                print(f"stale: {line} (run `python -m tools.sync_docs`)", file=sys.stderr)
            raise SystemExit(1 if bad else 0)
        for doc in documents():
            text = doc.read_text(encoding="utf-8")
            new = render(text)
            if new != text:
                doc.write_text(new, encoding="utf-8")
                print(f"updated {doc.relative_to(REPO)}")
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
