"""One ordered process-pool map, shared by the stages that decode files on every core."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def _worker_start(initializer: Callable[[], None] | None) -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent handles it and stops
    # the pool, so workers ignore it rather than each printing a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The pool stops its workers with SIGTERM when it closes: they must die at once. A stage's own
    # handler (an orderly exit, localize.preflight) would have a worker unwind while a sibling holds
    # the task queue's lock, and the pool would wait for it forever. Workers come from a fork server
    # and do not inherit it; the reset is a safeguard, should that ever change.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if initializer is not None:
        initializer()


def ordered_map(func: Callable[[Any], Any], tasks: Sequence[Any], workers: int, max_chunk: int,
                initializer: Callable[[], None] | None = None) -> Iterator[Any]:
    """`func` over `tasks` on `workers` processes, results in task order (serially for one worker).

    In order, so the first failure reported is the first in the input's order. Chunks of up
    to `max_chunk` tasks, about 8 per worker, keep the pool busy without piling up results.
    """
    if workers <= 1 or len(tasks) < 2:
        yield from map(func, tasks)
        return
    chunksize = max(1, min(max_chunk, len(tasks) // (workers * 8)))
    # Workers come from a fork server, a fresh single-threaded process, never from a fork of this
    # one: a fork copies locks held by this process's other threads (OpenMP's and OpenCV's pools
    # after any torch or cv2 call, tqdm's monitor, a test runner's), and a worker that then takes
    # one waits forever. Python 3.14 makes this the default on Linux for that reason.
    context = multiprocessing.get_context("forkserver")
    with context.Pool(workers, initializer=_worker_start, initargs=(initializer,)) as pool:
        yield from pool.imap(func, tasks, chunksize=chunksize)
