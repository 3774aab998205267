"""A per-file checksum manifest of a folder (the demo dataset), and a comparison against one.

`data/demo.manifest.tsv` is written by the demo stage and committed (not cached), so any
machine can list which of the demo's files its own build changed, where DVC's hash of the
folder only says that something did:

    python -m localize.manifest data/demo data/demo.manifest.tsv   # exit 1 and the list if they differ
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HEADER = "path\tmd5\tbytes"


def entries(root: Path) -> dict[str, tuple[str, int]]:
    """relative path (POSIX) -> (md5, size) of every file under `root`."""
    out = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        data = path.read_bytes()
        out[path.relative_to(root).as_posix()] = (hashlib.md5(data).hexdigest(), len(data))
    return out


def write(root: Path, manifest: Path) -> None:
    lines = [HEADER] + [f"{rel}\t{md5}\t{size}" for rel, (md5, size) in entries(root).items()]
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(lines) + "\n")


def read(manifest: Path) -> dict[str, tuple[str, int]]:
    lines = Path(manifest).read_text().splitlines()
    if not lines or lines[0] != HEADER:
        raise ValueError(f"{manifest}: not a manifest (its first line is not {HEADER!r})")
    out = {}
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != 3 or not parts[2].isdigit():
            raise ValueError(f"{manifest}, line {number}: expected path, md5 and bytes separated by tabs")
        out[parts[0]] = (parts[1], int(parts[2]))
    return out


def differences(root: Path, manifest: Path) -> list[str]:
    """One line per file that is missing, extra, or has other bytes than the manifest says."""
    want, have = read(manifest), entries(root)
    lines = [f"missing\t{p}" for p in want if p not in have]
    lines += [f"extra\t{p}" for p in have if p not in want]
    lines += [f"differs\t{p}\t{want[p][1]} -> {have[p][1]} bytes" for p in want if p in have and want[p] != have[p]]
    return lines


def dvc_md5(listed: dict[str, tuple[str, int]]) -> str:
    """The md5 DVC records for a folder with these files (`<md5>.dir` in dvc.lock): the md5 of its
    sorted JSON listing. So a manifest can be checked against dvc.lock without the data."""
    rows = [{"md5": md5, "relpath": rel} for rel, (md5, _) in sorted(listed.items())]
    return hashlib.md5(json.dumps(rows, sort_keys=True).encode()).hexdigest() + ".dir"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m localize.manifest FOLDER MANIFEST")
    root, manifest = Path(args[0]), Path(args[1])
    try:
        lines = differences(root, manifest)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    for line in lines:
        print(line)
    listed = read(manifest)
    print(f"{root}: {'matches' if not lines else f'{len(lines)} of {len(listed)} files differ from'} {manifest} "
          f"(DVC hash of the manifest's files: {dvc_md5(listed)}, of this build: {dvc_md5(entries(root))})",
          file=sys.stderr)
    if lines:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
