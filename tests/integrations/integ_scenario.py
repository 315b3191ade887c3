"""A deterministic carbon scenario for the integration tests: two sites on a SYNTHETIC trace,
virtual time, and a CAFTM controller that moves the job whenever its site crosses θ.

Each training step takes ``STEP_S`` of virtual time and reads trace column ``step``. Site A's
intensity is high (500 g/kWh, θ = 300) on the columns in ``[s1, s2)`` and from ``s3`` on, site
B's on ``[s2, s3)``; so a run started at A is moved (checkpoint, stop) at steps s1 → B, s2 → A
and s3 → B. A trace with no switches never crosses θ (the uninterrupted reference run).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from caftm.control import Controller, ControllerConfig, make_policy
from caftm.signals.base import Kind
from caftm.signals.refresher import IntensityRefresher
from caftm.signals.traces import TraceSource

STEP_S = 600
START = datetime(2026, 11, 26, tzinfo=UTC)
SITES = {"site-a": "DE", "site-b": "FR"}
HIGH, LOW, MID = 500.0, 100.0, 200.0
TRACE_STEPS = 400


class VirtualClock:
    """POSIX seconds that move only when told."""

    def __init__(self, step: int = 0) -> None:
        self.now_s = START.timestamp() + step * STEP_S

    def at_step(self, step: int) -> None:
        """Move to the time of trace column ``step``."""
        self.now_s = START.timestamp() + step * STEP_S

    def __call__(self) -> float:
        return self.now_s


def random_switch_steps(seed: int, total_steps: int) -> tuple[int, int, int]:
    """Three distinct random steps in [1, ``total_steps``), in order."""
    s1, s2, s3 = sorted(random.Random(seed).sample(range(1, total_steps), 3))
    return s1, s2, s3


def make_trace(switch_steps: Sequence[int] = ()) -> TraceSource:
    """SYNTHETIC two-zone trace; ``switch_steps`` = (s1, s2, s3) or empty (never crosses θ)."""
    a = np.full(TRACE_STEPS, MID)
    b = np.full(TRACE_STEPS, LOW)
    if switch_steps:
        s1, s2, s3 = switch_steps
        a[s1:s2] = HIGH
        a[s2:s3] = LOW
        a[s3:] = HIGH
        b[s2:s3] = HIGH
    return TraceSource(
        list(SITES.values()),
        START,
        STEP_S,
        np.stack([a, b]),
        kind=Kind.SYNTHETIC,
        label="synthetic",
    )


def make_config(
    checkpoint_url: str | Path,
    *,
    site: str = "site-a",
    total_steps: int = 30,
    policy: str = "caftm",
) -> ControllerConfig:
    """Absolute θ = 300 g/kWh, no dwell, free moves: every crossing moves the job."""
    return ControllerConfig.from_dict(
        {
            "sites": [{"name": name, "zone": zone} for name, zone in SITES.items()],
            "site": site,
            "total_steps": total_steps,
            "threshold": {"mode": "absolute", "value_g_per_kwh": 300.0, "hysteresis_fraction": 0.1},
            "policy": {"name": policy, "min_dwell_s": 0.0},
            "migration": {
                "checkpoint_s": 0.0,
                "transfer_s": 0.0,
                "restart_s": 0.0,
                "margin_g": 0.0,
            },
            "checkpoint": {"url": str(checkpoint_url), "keep_last": 2},
        },
        env={},
    )


def make_controller(
    config: ControllerConfig, trace: TraceSource, clock: VirtualClock
) -> tuple[Controller, IntensityRefresher]:
    """A controller on ``trace`` in virtual time; the caller drives ``refresh_once``."""
    refresher = IntensityRefresher(trace, config.site_zones(), config.start_site, clock=clock)
    policy = make_policy(config.policy.name, config.rules())
    controller = Controller(
        policy,
        refresher,
        threshold=config.threshold_spec(),
        total_steps=config.total_steps,
        clock=clock,
        simulated=True,
    )
    return controller, refresher
