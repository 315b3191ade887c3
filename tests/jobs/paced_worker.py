"""The demo worker, each step taking at least ``$PACE_S`` seconds (a slower GPU), so a job's
length in wall time (and so on an accelerated clock) does not depend on how fast this machine is.

    python paced_worker.py --config JOB.yaml --checkpoint-every N
"""

from __future__ import annotations

import os
import sys
import time

from caftm.demo.worker import main
from caftm.integrations.torch import CarbonAwareTraining

_PACE_S = float(os.environ.get("PACE_S", "0"))
_step = CarbonAwareTraining.step
_last = [time.monotonic()]


def _paced_step(self: CarbonAwareTraining) -> None:
    wait = _PACE_S - (time.monotonic() - _last[0])
    if wait > 0:
        time.sleep(wait)
    _last[0] = time.monotonic()
    _step(self)


CarbonAwareTraining.step = _paced_step  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
