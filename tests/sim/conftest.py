"""Fixtures of the simulator tests: the real 2022 trace (skipped with a reason when absent)."""

from __future__ import annotations

import pytest
from tests.conftest import shared_file
from tests.control.conftest import REAL_ZONES

from caftm.signals.traces import TraceSource, load_trace

CI_2022 = "carbon/ci_2022_hourly_lca_123zones.csv"
BENCH_ZONES = ("KR", "FR", "DE", "CA-ON", "JP-TK", "GB", "US-CAL-CISO", "US-MIDA-PJM")


@pytest.fixture(scope="session")
def real_trace() -> TraceSource:
    """Hourly 2022 lifecycle intensity (Electricity Maps data, ODbL) of the controller tests'
    zones and the bench's."""
    zones = list(dict.fromkeys([*REAL_ZONES, *BENCH_ZONES]))
    return load_trace(shared_file(CI_2022), zones=zones)
