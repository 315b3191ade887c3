"""The public surface of caftm.control and caftm.ledger is pinned; the controller as a context
manager with the real refresher thread and clock."""

from __future__ import annotations

from tests.control.conftest import synthetic_source

import caftm.control
import caftm.ledger
from caftm.control import CAFTM, Controller
from caftm.records import State
from caftm.signals.refresher import IntensityRefresher


def test_public_names_are_pinned_and_sorted() -> None:
    assert len(caftm.control.__all__) == len(set(caftm.control.__all__))
    assert set(caftm.control.__all__) == {
        "CAFTM",
        "POLICIES",
        "Action",
        "ApplySetting",
        "Band",
        "CarbonAgnostic",
        "Checkpoint",
        "ControlState",
        "Controller",
        "ControllerConfig",
        "Finish",
        "ForecastAwareCAFTM",
        "GpuOptimizer",
        "GreedyCleanest",
        "Hooks",
        "Migrate",
        "MoveCost",
        "Observation",
        "Pause",
        "Plan",
        "PlanKind",
        "Policy",
        "Preempt",
        "Resume",
        "Rules",
        "SiteOutlook",
        "StartProfiling",
        "Step",
        "SuspendResume",
        "ThresholdMode",
        "ThresholdSpec",
        "WindowMeter",
        "apply_env",
        "compute_band",
        "make_policy",
        "score_moves",
        "score_wait",
        "transition",
    }
    assert caftm.ledger.__all__ == [
        "EventRecord",
        "JobBook",
        "JobRecord",
        "JobStatus",
        "JobTotals",
        "Ledger",
        "LegRecord",
        "LegStatus",
        "RunSpan",
        "RunSummary",
        "TransferRecord",
        "TransferStatus",
        "WindowRecord",
        "default_ledger_path",
        "ledger_location",
        "ledger_missing",
    ]
    for package in (caftm.control, caftm.ledger):  # each name is caftm's own, from its package
        for name in package.__all__:
            value = getattr(package, name)
            if isinstance(value, dict):  # a registry: its entries are the package's own
                value = next(iter(value.values()))
            if isinstance(value, type) or (callable(value) and hasattr(value, "__code__")):
                origin = value.__module__
                assert origin.startswith(package.__name__ + "."), (name, origin)


def test_context_manager_with_the_real_refresher_thread_and_clock() -> None:
    import time

    now_hour = int(time.time() // 3600 * 3600)
    source = synthetic_source({"DE": [250.0] * 4}, start_s=now_hour - 3600)
    refresher = IntensityRefresher(source, {"DE": "DE"}, "DE", interval_s=0.01)
    applied: list[float | None] = []
    from caftm.control import Hooks

    with Controller(CAFTM(), refresher, hooks=Hooks(apply_setting=applied.append)) as controller:
        assert refresher.running
        for _ in range(2000):
            assert controller.step() is State.TOLERANCE
        time.sleep(0.05)  # let the thread poll a few times
        assert refresher.version > 1
    assert controller.state is State.DONE
    assert not refresher.running
    assert applied[-1] is None  # GPU default restored on exit
    assert controller.events[-1].reason == "training finished"
