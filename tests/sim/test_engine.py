"""The simulator's accounting, its forecasts (the past only, or an oracle), and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from tests.control.conftest import T0_S, synthetic_source
from tests.sim.sim_support import wavy_sites

from caftm._units import carbon_g
from caftm.control import CAFTM, CarbonAgnostic, Rules, ThresholdSpec
from caftm.errors import ConfigError
from caftm.records import State
from caftm.sim import (
    SPECS,
    GpuProfile,
    LazyForecast,
    MoveModel,
    SimJob,
    SiteTraces,
    simulate_job,
)

GPU = GpuProfile.simulated("gpt")


def test_carbon_agnostic_on_a_constant_grid_costs_power_times_time_times_intensity() -> None:
    trace = synthetic_source({"X": [300.0] * 48})
    traces = SiteTraces(trace, {"X": "X"})
    job = SimJob(10.0, "X", T0_S, gpus=2)
    result = simulate_job(CarbonAgnostic(), job, traces, GPU, threshold=ThresholdSpec())
    assert result.finished and result.moves == 0 and result.pauses == 0
    assert result.jct_s == pytest.approx(5 * 3600.0)
    energy = GPU.power_at(None) * 2 * 5 * 3600.0
    assert result.energy_j == pytest.approx(energy)
    assert result.carbon_g == pytest.approx(carbon_g(energy, 300.0))
    assert result.events[-1].to_state is State.DONE


def test_a_dirty_start_moves_to_the_clean_site_and_the_segments_add_up() -> None:
    trace = synthetic_source({"DIRTY": [600.0] * 48, "CLEAN": [50.0] * 48})
    traces = SiteTraces(trace, {"DIRTY": "DIRTY", "CLEAN": "CLEAN"})
    job = SimJob(12.0, "DIRTY", T0_S)
    move = MoveModel().cost(job.checkpoint_gb)
    result = simulate_job(
        CAFTM(Rules(deadline_s=job.deadline_s, move_cost=move)),
        job,
        traces,
        GPU,
        threshold=ThresholdSpec(),
        record=True,
    )
    assert result.moves == 1
    assert [s.kind for s in result.segments][:2] == ["move", "train"]
    assert result.segments[0].site == "DIRTY" and result.segments[1].site == "CLEAN"
    assert sum(s.carbon_g for s in result.segments) == pytest.approx(result.carbon_g)
    assert result.jct_s == pytest.approx(12 * 3600.0 + move.downtime_s, rel=0.01)
    stay = simulate_job(CarbonAgnostic(), job, traces, GPU, threshold=ThresholdSpec())
    assert result.carbon_g < 0.15 * stay.carbon_g


def test_suspend_resume_pauses_through_a_dirty_spell_golden_carbon_and_jct() -> None:
    # SYNTHETIC: 2 h at 100, 3 h at 600 (≥ θ 400), then 100 g/kWh; 4 GPU-h, deadline 8 h.
    # Golden figures, obtained once from this engine and checked by hand: train 0-2 h, pause
    # 2-5 h (re-checked every 15 min: each re-check is a Pause action with the state kept, after
    # which the engine must decide again, not train), clean again at 5 h, train 5-7 h.
    # Carbon = 644 W x 4 h x 100 g/kWh + 100 W (idle) x 3 h x 600 g/kWh = 257.6 + 180 = 437.6 g;
    # JCT = 7 h. (Training through the re-checks instead gave 961.6 g and 5 h.)
    assert GPU.power_at(None) == 644.0 and GPU.idle_power_w == 100.0
    traces = SiteTraces(
        synthetic_source({"X": [100.0] * 2 + [600.0] * 3 + [100.0] * 11}), {"X": "X"}
    )
    job = SimJob(4.0, "X", T0_S, deadline_factor=2.0)
    spec = SPECS["suspend-resume"]
    rules = Rules(deadline_s=job.deadline_s, move_cost=MoveModel().cost(job.checkpoint_gb))
    result = simulate_job(spec.build(rules), job, traces, GPU, threshold=spec.threshold)
    assert result.finished and result.pauses == 1 and result.moves == 0
    assert result.carbon_g == pytest.approx(437.6)
    assert result.jct_s == pytest.approx(7 * 3600.0)
    assert result.energy_j == pytest.approx(644.0 * 4 * 3600 + 100.0 * 3 * 3600)


def test_a_job_longer_than_the_trace_is_reported_unfinished() -> None:
    traces = SiteTraces(synthetic_source({"X": [100.0] * 10}), {"X": "X"})
    result = simulate_job(
        CarbonAgnostic(), SimJob(24.0, "X", T0_S), traces, GPU, threshold=ThresholdSpec()
    )
    assert not result.finished


def test_a_gap_in_a_site_series_is_refused_naming_zone_and_time() -> None:
    values = [100.0] * 24
    values[5] = float("nan")
    with pytest.raises(ConfigError, match=r"zone X .*missing value.*T05:00"):
        SiteTraces(synthetic_source({"X": values}), {"X": "X"})


def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown zone 'NOPE'"):
        SiteTraces(synthetic_source({"X": [1.0] * 24}), {"S": "NOPE"})


def test_our_forecast_reads_only_the_past() -> None:
    trace = wavy_sites(hours=24 * 12)
    traces = SiteTraces(trace, {s: s for s in ("A", "B", "C")})
    col = 24 * 6
    before = traces.compute_forecast(0, col, "ours")
    assert len(before) == 24
    changed = trace.values.copy()
    changed[:, col:] *= 3.0  # the future changes; the forecast must not
    other = SiteTraces(
        synthetic_source({z: changed[i].tolist() for i, z in enumerate("ABC")}),
        {s: s for s in ("A", "B", "C")},
    )
    assert other.compute_forecast(0, col, "ours") == before
    assert other.compute_forecast(0, col, "oracle") != traces.compute_forecast(0, col, "oracle")


def test_the_oracle_forecast_is_the_trace_future_and_needs_no_history() -> None:
    trace = wavy_sites(hours=48)
    traces = SiteTraces(trace, {s: s for s in ("A", "B", "C")})
    oracle = traces.forecast(1, T0_S + 3 * 3600.0 + 120.0, "oracle")
    assert list(oracle) == pytest.approx(trace.values[1, 3:27].tolist())
    assert traces.forecast(1, T0_S, "ours") == ()  # no two days of history yet
    assert traces.forecast(1, T0_S, "none") == ()


def test_a_lazy_forecast_behaves_as_the_tuple_it_stands_for() -> None:
    traces = SiteTraces(wavy_sites(hours=24 * 4), {s: s for s in ("A", "B", "C")})
    lazy = traces.forecast_at(2, 50, "ours")
    assert isinstance(lazy, LazyForecast) and len(lazy) == 24 and lazy
    values = traces.compute_forecast(2, 50, "ours")
    assert lazy[:3] == values[:3] and lazy[5] == values[5] and list(lazy) == list(values)
    np.testing.assert_allclose(np.asarray(lazy, dtype=float), values)


def test_gpu_profile_settles_on_a_slower_clock_only_on_a_dirty_grid() -> None:
    assert GPU.best_setting(50.0) == GPU.settings[0]
    slow = GPU.best_setting(700.0)
    assert slow < GPU.settings[0]
    assert GPU.time_factor(slow) > 1.0 and GPU.power_at(slow) < GPU.power_at(None)


def test_the_span_where_every_site_has_data_is_kept_and_jobs_outside_it_refused() -> None:
    late = [float("nan")] * 24 + [200.0] * 24  # SYNTHETIC: B starts a day later
    traces = SiteTraces(synthetic_source({"A": [100.0] * 48, "B": late}), {"A": "A", "B": "B"})
    assert traces.start_s == T0_S + 24 * 3600.0 and traces.n_steps == 24
    with pytest.raises(ConfigError, match="outside the trace"):
        simulate_job(
            CarbonAgnostic(), SimJob(2.0, "A", T0_S), traces, GPU, threshold=ThresholdSpec()
        )
    with pytest.raises(ConfigError, match="start site 'C'"):
        simulate_job(
            CarbonAgnostic(),
            SimJob(2.0, "C", T0_S + 86_400.0),
            traces,
            GPU,
            threshold=ThresholdSpec(),
        )
