"""Write outputs so that a failed stage leaves nothing that looks finished.

Each output is built under a temporary sibling name and renamed into place only when
the stage succeeds. On any exception the temporary is removed and the old output (if
any) is left untouched, so DVC never caches a half-written result. Outputs get the
permissions of any file the user creates (the umask's), not the private ones that
temporary files are created with.

A hard kill (SIGKILL, power loss) can still leave a temporary behind. Its writer holds a
lock on it while it lives, so a temporary that nobody holds is stale: it is removed the
next time the output is written, and by `remove_stale` (every stage calls it at its start
for the folders it works in, see localize.preflight), since DVC may restore an output
from its cache without running the stage that writes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: no locks, so any temporary found counts as stale
    fcntl = None

_TMP = ".tmp-"


def _prefix(final: Path) -> str:
    return f".{final.name}{_TMP}"


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask sets it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _remove_if_stale(path: Path) -> bool:
    """Remove a temporary that no living writer holds; True if it was removed."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:  # vanished, or a symlink: not one of ours
        return False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # its writer is alive
        _remove(path)
        return True
    finally:
        os.close(fd)


def remove_stale(folders: Iterable[str | Path]) -> list[Path]:
    """Remove the temporaries that killed writers left in `folders`; return them."""
    removed = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        try:
            candidates = sorted(folder.glob(f".*{_TMP}*"))
        except OSError:
            continue
        removed += [p for p in candidates if _remove_if_stale(p)]
    return removed


def _prepare(final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f"{_prefix(final)}*"):
        _remove_if_stale(stale)


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `final` on success."""
    final = Path(final)
    _prepare(final)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(final), dir=final.parent))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        _lock(fd)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.exists() or final.is_symlink():
            _remove(final)
        os.replace(tmp, final)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that replaces `final` on success."""
    final = Path(final)
    _prepare(final)
    fd, name = tempfile.mkstemp(prefix=_prefix(final), suffix=final.suffix, dir=final.parent)
    tmp = Path(name)
    try:
        _lock(fd)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600
        try:
            yield tmp
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, final)
    finally:
        os.close(fd)


class _DeferSignals:
    """SIGINT and SIGTERM held back for a short block and delivered when it ends: Python runs signal
    handlers in the main thread only, so swapping the handlers there defers them whatever thread the
    kernel picks. Off the main thread handlers cannot be swapped: the block then relies on its rollback."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s)

    def __enter__(self) -> _DeferSignals:
        self.pending: list[int] = []
        self.saved: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.saved[sig] = signal.signal(sig, lambda number, frame: self.pending.append(number))
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            if handler is not None:  # None: set outside Python, cannot be put back from here
                signal.signal(sig, handler)
        for sig in dict.fromkeys(self.pending):
            signal.raise_signal(sig)  # now, under the stage's own handler (KeyboardInterrupt, exit)


def _commit(moves: dict[Path, Path], holders: dict[Path, Path]) -> None:
    """Move every temporary onto its final path, all or none: the previous outputs go aside first (into
    each final's locked holder folder beside it, so the same filesystem), then the new ones in. Any
    failure or interrupt on the way moves the new ones back out and the previous ones back in."""
    aside: dict[Path, Path] = {}
    placed: list[Path] = []
    with _DeferSignals():
        try:
            for final in moves:
                if final.exists() or final.is_symlink():
                    os.replace(final, holders[final] / "previous")
                    aside[final] = holders[final] / "previous"
            for final, tmp in moves.items():
                os.replace(tmp, final)
                placed.append(final)
        except BaseException:
            for final in reversed(placed):
                os.replace(final, moves[final])  # back to its temporary, removed with it
            for final, previous in aside.items():
                os.replace(previous, final)
            raise


@contextlib.contextmanager
def atomic_outputs(files: Iterable[str | Path] = (), dirs: Iterable[str | Path] = ()) -> Iterator[dict[Path, Path]]:
    """Temporaries for all of a stage's outputs (final path -> temporary), moved into place together
    once the block succeeds. On any failure or Ctrl-C inside the block, none is moved. The moves
    themselves are all or nothing too (see _commit): SIGINT and SIGTERM wait until they are done, and
    any other failure among them puts every previous output back. Either every output is new or every
    one is as it was. (A hard kill among the renames can still lose previous outputs: they sit in a
    holder folder that the next write treats as stale.)"""
    files, dirs = [Path(f) for f in files], [Path(d) for d in dirs]
    tmps: dict[Path, Path] = {}
    holders: dict[Path, Path] = {}
    fds: list[int] = []
    try:
        for final in [*files, *dirs]:
            _prepare(final)
            holders[final] = Path(tempfile.mkdtemp(prefix=_prefix(final), dir=final.parent))
            fds.append(os.open(holders[final], os.O_RDONLY))
            _lock(fds[-1])
        for final in files:
            fd, name = tempfile.mkstemp(prefix=_prefix(final), suffix=final.suffix, dir=final.parent)
            fds.append(fd)
            tmps[final] = Path(name)
            _lock(fd)
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600
        for final in dirs:
            tmps[final] = Path(tempfile.mkdtemp(prefix=_prefix(final), dir=final.parent))
            fds.append(os.open(tmps[final], os.O_RDONLY))
            _lock(fds[-1])
            os.chmod(tmps[final], 0o777 & ~_umask())  # mkdtemp makes it 0700
        yield dict(tmps)
        _commit(tmps, holders)
    finally:
        for path in [*tmps.values(), *holders.values()]:  # what is left: the new ones (failed) or the old
            _remove(path)
        for fd in fds:
            os.close(fd)


def temp_dir(kind: str) -> tempfile.TemporaryDirectory:
    """A working folder in the system's temp dir, `<kind>-<pid>-…`: removed when its block ends (also on
    SIGTERM, which localize.preflight turns into an exit), and by `remove_stale_temp_dirs` once its
    process is gone (SIGKILL)."""
    return tempfile.TemporaryDirectory(prefix=f"{kind}-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_dirs(kinds: Iterable[str]) -> list[Path]:
    """Remove the `temp_dir` folders of `kinds` whose process no longer runs; return them."""
    removed = []
    for kind in kinds:
        for path in Path(tempfile.gettempdir()).glob(f"{kind}-*-*"):
            pid = path.name[len(kind) + 1 :].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed
