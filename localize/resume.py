"""Resume state of the train stage: the files it leaves in --checkpoints, and the code they belong to.

Names, built and parsed here only:

    <split>-<key>.pt         the newest epoch's checkpoint of a split still training
    <split>-<key>.done.pt    a finished split's model, kept until every output is written

`<key>` is training.run_key: the params, the data and `code_fingerprint`, a hash of the source of
every project module the train stage imports (found from the import statements, transitively),
so a change to the loss, a model or the loop never resumes a checkpoint of the old code, while an
edit to another stage (evaluate, say) keeps them.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("localize", "stages")
DONE = ".done.pt"
SUFFIX = ".pt"


class ResumeFile(NamedTuple):
    split: str
    key: str
    done: bool


def resume_path(folder: Path, split: str, key: str, done: bool = False) -> Path:
    return Path(folder) / f"{split}-{key}{DONE if done else SUFFIX}"


def parse_resume_path(path: Path) -> ResumeFile | None:
    """(split, key, done) of a resume file's name; None for any other file (a temporary, say)."""
    name = Path(path).name
    if name.startswith(".") or not name.endswith(SUFFIX):
        return None
    done = name.endswith(DONE)
    stem = name[: -len(DONE if done else SUFFIX)]
    split, sep, key = stem.rpartition("-")  # split names hold dashes (no-telea); keys are hex
    if not sep or not split or not key:
        return None
    return ResumeFile(split, key, done)


def module_file(name: str, root: Path = ROOT) -> Path:
    path = root / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def local_imports(path: Path, root: Path = ROOT, seen: set[Path] | None = None) -> set[Path]:
    """`path` and every localize/stages module file it imports, transitively (any import statement)."""
    seen = {path} if seen is None else seen
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] not in PACKAGES:
                continue
            # A package's __init__ runs before any of its modules.
            targets = [module_file(".".join(parts[:i]), root) for i in range(1, len(parts))] + [module_file(name, root)]
            for target in targets:
                if target.exists() and target not in seen:
                    seen.add(target)
                    local_imports(target, root, seen)
    return seen


def fingerprint_files(script: str = "stages.train", root: Path = ROOT) -> list[Path]:
    return sorted(local_imports(module_file(script, root), root))


def code_fingerprint(script: str = "stages.train", root: Path = ROOT) -> str:
    """A hash of the source of `script` and of every project module it imports."""
    h = hashlib.sha256()
    for path in fingerprint_files(script, root):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def resume_files(folder: Path, split: str | None = None, done: bool | None = None) -> list[Path]:
    """The resume files in `folder` (of `split`, finished or not where given), by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        parsed = parse_resume_path(path)
        if parsed and split in (None, parsed.split) and done in (None, parsed.done):
            found.append(path)
    return found
