"""What every stage does first, before any work: check every params section, and clear away
the temporaries that a killed run left next to the stage's files.

Params. A stage declares (in dvc.yaml) and reads only its own sections, so its outputs
depend on nothing else. But a bad value in a later stage's section (say
`evaluate.threshold: 2`) would otherwise surface only when that stage runs, after the
heavy stages before it. So each stage first validates *every* section of params.yaml
through its dataclass in localize.params, which only decides whether the stage starts,
never what it writes. That is why those sections are not declared as the stage's params
(declaring them would rerun every stage whenever any param changed). Whichever stage DVC
runs first after an edit is the first to check, so a bad value stops the pipeline before
its first heavy stage. Sections a params file leaves out are not checked here; the stage
that reads them applies its defaults, which equal params.yaml's (tests/test_params.py).

Temporaries. See localize.atomic: DVC may restore a stage's outputs from its run cache
without running the stage, so a temporary left by an earlier killed run of that stage
would stay; every stage that runs removes the stale ones in the folders it reads and
writes (a temporary whose writer is alive is locked, and never touched).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from localize import params
from localize.atomic import remove_stale, remove_stale_temp_dirs
from localize.config import parse_section, read_params

# params.yaml section -> the dataclass that validates it.
SECTIONS = {
    "demo": params.DemoParams,
    "data": params.DataParams,
    "index": params.IndexParams,
    "preprocess": params.PreprocessParams,
    "model": params.ModelParams,
    "train": params.TrainParams,
    "pretrain": params.PretrainParams,
    "texture": params.TextureParams,
    "ceiling": params.CeilingParams,
    "evaluate": params.EvaluateParams,
    "robustness": params.RobustnessParams,
}


def check_params(path: str | Path = "params.yaml") -> None:
    """Validate every known section present in the params file; ParamsError on the first bad one."""
    values = read_params(path)
    for section, cls in SECTIONS.items():
        if section in values:
            parse_section(cls, values[section], section)


# The working folders (localize.atomic.temp_dir) that stages make in the system's temp dir.
TEMP_KINDS = ("robustness", "cross-root")


def _exit_on_sigterm(signum, frame) -> None:
    # An exit, not the default death: `with` blocks end, so temporaries are removed and no output moves in.
    raise SystemExit(128 + signum)


def _exit_outside_finalizers(previous_hook):
    """An unraisable-exception hook that lets a SIGTERM landing in a finalizer end the program.

    A finalizer (a generator that the garbage collector closes, as tqdm's progress bars are; a
    `__del__`) cannot pass an exception on: Python prints the SIGTERM's SystemExit as "Exception
    ignored in ... Traceback" and goes on running. So the exit is raised again 10 ms later, by an
    alarm, at the main thread's next step outside the finalizer. (A signal raised from this hook
    itself is handled at once, inside the hook, and ignored the same way.)
    """
    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, SystemExit) and unraisable.exc_value.code == 128 + signal.SIGTERM:
            signal.signal(signal.SIGALRM, lambda signum, frame: _exit_on_sigterm(signal.SIGTERM, frame))
            signal.setitimer(signal.ITIMER_REAL, 0.01)
        else:
            previous_hook(unraisable)
    return hook


def check_and_clear(params: str | Path = "params.yaml", paths: Iterable[str | Path] = ()) -> None:
    """A stage's first step: every params section checked, stale temporaries next to `paths` and in the
    system's temp dir removed, and SIGTERM made an orderly exit."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        sys.unraisablehook = _exit_outside_finalizers(sys.unraisablehook)
    check_params(params)
    remove_stale(Path(p).parent for p in paths)
    remove_stale_temp_dirs(TEMP_KINDS)
