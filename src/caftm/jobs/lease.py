"""The supervisor's lease on its job: one supervisor acts on a job at a time, on any host.

A supervisor takes the job's lease in the ledger when it starts (one conditional UPDATE, so of
two supervisors racing for a job one wins) and renews it from a heartbeat thread every third of
the lease. Another ``caftm run`` of the job:

=====================================================  ========================================
the lease is                                           it
=====================================================  ========================================
free, expired, or held by a dead process on this host  takes the job over (adopts or restarts
                                                       its leg: :mod:`caftm.jobs.recovery`)
held and renewed by a live supervisor                  refuses with one line; with
                                                       ``--standby`` waits and takes over once
                                                       the lease expires
=====================================================  ========================================

A supervisor that finds its lease taken (it stalled past the lease) stops acting on the job at
once: it never signals the worker the new supervisor watches. Times are each host's wall clock
(POSIX s): hosts keep their clocks in step (NTP) to well within a lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from caftm.errors import CaftmError, ConfigError, ExecutorError
from caftm.ledger.jobs import JobBook, JobRecord, lease_holder, lease_owner_id
from caftm.ledger.store import pid_alive

__all__ = ["LEASE_ENV", "LEASE_S", "Lease", "LeaseLost", "lease_s_from_env"]

log = logging.getLogger(__name__)

LEASE_S = 30.0
"""How long a lease lasts without a heartbeat (s): a job whose supervisor's host died is taken
over this long after its last heartbeat."""
LEASE_ENV = "CAFTM_SUPERVISOR_LEASE_S"


class LeaseLost(ExecutorError):
    """Another supervisor holds the job's lease now: this one must not act on the job."""


def lease_s_from_env() -> float:
    """``$CAFTM_SUPERVISOR_LEASE_S``, else :data:`LEASE_S`.

    Raises:
        ConfigError: the variable is no positive number.
    """
    text = os.environ.get(LEASE_ENV)
    if not text:
        return LEASE_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{LEASE_ENV}={text!r}: give a positive number of seconds")
    return value


class Lease:
    """This supervisor's lease on one job (taken by :meth:`take`, kept by a heartbeat thread).

    Args:
        book: the job book.
        name: the job.
        lease_s: how long the lease lasts without a heartbeat (s).
        wall: the wall clock (POSIX s).
    """

    def __init__(
        self,
        book: JobBook,
        name: str,
        *,
        lease_s: float = LEASE_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
        self.name = name
        self.lease_s = lease_s
        self.wall = wall
        self.owner = lease_owner_id(os.getpid(), socket.gethostname(), uuid.uuid4().hex[:8])
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self, *, standby: bool, sleep: Callable[[float], None] = time.sleep) -> JobRecord:
        """Take the lease (waiting for it to expire when ``standby``); returns the job.

        Raises:
            ExecutorError: a live supervisor holds it and ``standby`` is False.
        """
        announced = False
        while True:
            job = self.book.get(self.name)
            dead = _dead_local_holder(job)
            if self.book.take_lease(self.name, self.owner, now_s=self.wall(),
                                    lease_s=self.lease_s, replacing=dead):  # fmt: skip
                return self.book.get(self.name)
            job = self.book.get(self.name)
            if job.status.finished and standby:
                return job
            pid, host = lease_holder(job)
            holder = f"process {pid} on {host}" if pid is not None else str(job.lease_owner)
            left_s = max(0.0, (job.lease_expires_s or 0.0) - self.wall())
            if not standby:
                raise ExecutorError(
                    f"job {self.name} is supervised by {holder} already (its lease runs "
                    f"{left_s:.0f} s more); stop it with `caftm cancel {self.name}`, or "
                    "`caftm run --standby` takes over if it stops"
                )
            if not announced:
                from caftm._notice import notice

                notice("job %s is supervised by %s; standing by to take it over", self.name,
                       holder)  # fmt: skip
                announced = True
            sleep(min(1.0, self.lease_s / 3))

    def keep(self) -> None:
        """Start the heartbeat: renew every third of the lease until :meth:`release`."""
        self._thread = threading.Thread(target=self._beat, name="caftm-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                held = self.book.renew_lease(self.name, self.owner, now_s=self.wall(),
                                             lease_s=self.lease_s)  # fmt: skip
            except CaftmError as e:  # the ledger is unreachable: try again at the next beat
                log.warning("cannot renew the lease on job %s: %s", self.name, e)
                continue
            if not held:
                self.lost.set()
                return

    def check(self) -> None:
        """Raise :class:`LeaseLost` once another supervisor took the job."""
        if self.lost.is_set():
            raise LeaseLost(
                f"job {self.name}: another supervisor took the job over (this one stalled "
                f"past its {self.lease_s:.0f} s lease); this one stops acting on it"
            )

    def release(self) -> None:
        """Stop the heartbeat and give the lease up (where still held)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not self.lost.is_set():
            try:
                self.book.release_lease(self.name, self.owner)
            except CaftmError:
                log.exception("could not release the lease on job %s", self.name)


def _dead_local_holder(job: JobRecord) -> str | None:
    """The job's lease owner when it is a process of this host that is gone (its lease need
    not be waited out); else None."""
    pid, host = lease_holder(job)
    if pid is None or host != socket.gethostname() or pid == os.getpid():
        return None
    return None if pid_alive(pid) else job.lease_owner
