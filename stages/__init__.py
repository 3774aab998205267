"""Pipeline stages, each run as `python -m stages.<name>` from dvc.yaml."""

import os
import sys

import localize  # noqa: F401  (first: it sets OpenCV's environment before stages.demo imports cv2)

# Idle OpenMP threads sleep instead of spinning. On a machine whose cores are shared (a
# `dvc queue` with several workers, tests beside training) spinning threads made every
# step 3-4x slower; on an idle machine sleeping costs about 5%. Set it yourself to override.
# This runs before any stage imports torch, which reads it once at start-up.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _quiet_interrupt(kind, value, traceback, default=sys.excepthook):
    # Ctrl-C that a stage did not catch itself (while its modules load, say): one line, no traceback.
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted; nothing was written, rerun the stage", file=sys.stderr)
        return
    default(kind, value, traceback)


sys.excepthook = _quiet_interrupt
