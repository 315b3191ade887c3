"""What a worker under ``caftm run`` tells its supervisor, whichever integration trains it.

The supervisor sets ``$CAFTM_STATUS_FILE`` and ``$CAFTM_OUTCOME_FILE`` (:mod:`caftm.jobs.protocol`).
The worker keeps a small live status in the first — the step reached, the step it restored, the
controller's site, state and carbon, and its fate lines (warnings on :mod:`caftm._notice`: a
checkpoint skipped as damaged, a fresh start although checkpoints exist, a GPU-control
fallback) — which the supervisor prints on its own terminal and records; it writes how it ended
into the second. Run alone, neither is set and nothing is written.

Only rank 0 writes. Under DDP every rank records its fate lines too — each restores from its
own store (a damaged checkpoint of rank 1 moves the whole job back to an older step) and sets
up its own GPU — and hands them to rank 0 once the ranks agreed on the step to resume
(:meth:`caftm.integrations.ddp.DistributedSteps.gather_notices`), prefixed with its rank;
after that only rank 0 decides, so only it has fate lines to report.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping

from caftm._notice import NoticeRecorder, notice
from caftm.checkpoint import CheckpointStore
from caftm.integrations._core import ControllerSession
from caftm.jobs.protocol import ENV_STATUS_FILE, StopRequest, write_outcome, write_status

__all__ = ["SupervisorReport", "notice_fresh_start"]

#: the live status is rewritten at most this often (s), unless forced
STATUS_INTERVAL_S = 0.5


def notice_fresh_start(store: CheckpointStore) -> None:
    """Say that training starts from step 0 although ``store`` holds checkpoint folders (none
    complete and intact); nothing when it holds none."""
    if store.steps_present():
        notice(
            "starting from step 0 although %s holds checkpoints: none of them is complete "
            "and intact",
            store.url,
            warning=True,
        )


class SupervisorReport:
    """A worker's live status and outcome for its supervisor (nothing when run alone).

    Args:
        rank: this process's rank; only rank 0 reports.

    Attributes:
        notices: the fate lines recorded while attached (None: not under a supervisor).
    """

    def __init__(self, *, rank: int = 0) -> None:
        path = os.environ.get(ENV_STATUS_FILE) or None
        self.path = path if rank == 0 else None
        self.rank = rank
        # every rank records (the others' lines go to rank 0's, see the module doc)
        self.notices = NoticeRecorder() if path is not None else None
        self._written_s = 0.0

    @property
    def supervised(self) -> bool:
        """True when a supervisor reads the status this process writes (rank 0's)."""
        return self.path is not None

    def attach(self, on_record: Callable[[], None] | None = None) -> None:
        """Record fate lines from now on (idempotent); ``on_record`` runs after each one (a
        callback writes its status at once, so the line reaches the supervisor)."""
        if self.notices is not None:
            self.notices.attach()
            if on_record is not None:
                self.notices.on_record = on_record

    def detach(self) -> None:
        """Stop recording (the lines recorded stay in the status)."""
        if self.notices is not None:
            self.notices.detach()

    def recording(self) -> contextlib.AbstractContextManager[object]:
        """Record fate lines in the block (under a supervisor; else nothing)."""
        if self.notices is None:
            return contextlib.nullcontext()
        return self.notices.recording()

    def write(
        self,
        fields: Mapping[str, object],
        session: ControllerSession | None,
        *,
        force: bool = False,
    ) -> None:
        """Write the live status: ``fields`` (``step``, ``start_step``, ...), the fate lines
        and ``session``'s controller view; at most every :data:`STATUS_INTERVAL_S` unless
        ``force``."""
        if self.path is None:
            return
        now = time.monotonic()
        if not force and now - self._written_s < STATUS_INTERVAL_S:
            return
        self._written_s = now
        status: dict[str, object] = dict(fields)
        status["notices"] = list(self.notices.lines) if self.notices is not None else []
        if session is not None:
            controller = session.controller
            status.update(
                site=controller.site,
                state=controller.state.value,
                setting=controller.setting,
                intensity_g_per_kwh=controller.current_intensity_g_per_kwh,
                carbon_g=controller.carbon_g,
                energy_j=controller.energy_j,
                clock_s=controller._clock(),
            )
            if session.job_clock is not None:  # the supervisor follows the job's clock
                status["clock"] = session.job_clock.to_env()
        write_status(status, self.path)

    def write_outcome(self, request: StopRequest) -> None:
        """Tell the supervisor how the leg ended (rank 0; nothing when run alone)."""
        if self.rank == 0:
            write_outcome(request)
