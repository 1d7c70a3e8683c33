"""Teachers that misbehave once, for the Ray engine's fault tests. They are effnet-lite0 under another name (so
their labels equal effnet-lite0's) whose first labelling call, across every process of the run, fails: it
raises, kills its own process, or sleeps (to leave time for a Ctrl-C). Imported by the Ray actors too, which
get the driver's sys.path."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from compress.teachers.base import register_teacher
from compress.teachers.effnet import EffNetLite0Teacher


class _OnceEffNet(EffNetLite0Teacher):
    def __init__(self, classes, work_dir, **kw):
        super().__init__(classes, work_dir, **kw)
        self.marker = Path(work_dir) / f"{self.name}.fault-done"

    def _first_call(self) -> bool:
        """True in exactly one call of the whole run (O_EXCL on a marker file beside the run's teacher files)."""
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def misbehave(self) -> None:
        raise NotImplementedError

    def predict_proba(self, images):
        if self._first_call():
            self.misbehave()
        return super().predict_proba(images)


class RaisesOnce(_OnceEffNet):
    name = "effnet-raises-once"

    def misbehave(self) -> None:
        raise RuntimeError("injected fault: labelling failed once")


class DiesOnce(_OnceEffNet):
    name = "effnet-dies-once"

    def misbehave(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class Slow(EffNetLite0Teacher):
    """Labels like effnet-lite0, one second per chunk: a run lasts long enough to be interrupted. `delay` is not
    part of the cache identity: a resumed run may set it to 0 and still finds the interrupted run's chunks."""
    name = "effnet-slow"
    delay = 1.0

    def predict_proba(self, images):
        time.sleep(self.delay)
        return super().predict_proba(images)


for _cls in (RaisesOnce, DiesOnce, Slow):
    register_teacher(_cls.name, f"_ray_faults:{_cls.__name__}")
