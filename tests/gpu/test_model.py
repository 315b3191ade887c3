"""Fitting the performance/power model recovers known parameters."""

from __future__ import annotations

import numpy as np
import pytest

from caftm.errors import ConfigError
from caftm.gpu.base import KnobKind, Measurement
from caftm.gpu.model import (
    ModelParams,
    default_prior,
    fit_model,
    power_w,
    prediction_std,
    step_time_s,
)

TRUE_CLOCK = ModelParams(KnobKind.CLOCK, 1980.0, 0.0346, 0.40, 240.0, 297.0, 3.0)
TRUE_POWER = ModelParams(KnobKind.POWER, 250.0, 0.20, 0.30, 60.0, 200.0, 2.0)


def _windows(params: ModelParams, settings: list[float], noise: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    out = []
    for s in settings:
        t = float(step_time_s(params, s)) * (1 + noise * rng.standard_normal())
        p = float(power_w(params, s)) * (1 + noise * rng.standard_normal())
        out.append(Measurement(params.knob, s, 20, 20 * t, 20 * t * p))
    return out


def _fit(params: ModelParams, settings: list[float], noise: float):
    ref = _windows(params, [params.setting_max], 0.0)[0]
    prior = default_prior(params.knob, params.setting_max, ref)
    return fit_model(_windows(params, settings, noise), prior, noise_rel=max(noise, 0.005))


def test_noise_free_clock_curve_recovers_parameters() -> None:
    fit = _fit(TRUE_CLOCK, [1980.0, 1500.0, 1200.0, 900.0, 600.0, 345.0], 0.0)
    p = fit.params
    assert p.beta == pytest.approx(0.40, abs=0.02)
    assert p.gamma == pytest.approx(3.0, abs=0.1)
    assert p.p_idle_w == pytest.approx(240.0, rel=0.05)
    assert p.p_idle_w + p.p_dyn_w == pytest.approx(537.0, rel=0.01)
    assert fit.residual_rms < 0.005


def test_noisy_clock_curve_predicts_within_noise() -> None:
    settings = [float(s) for s in range(345, 1981, 150)]
    fit = _fit(TRUE_CLOCK, settings, 0.01)
    grid = np.arange(345.0, 1981.0, 15.0)
    t_err = np.abs(step_time_s(fit.params, grid) / step_time_s(TRUE_CLOCK, grid) - 1)
    p_err = np.abs(power_w(fit.params, grid) / power_w(TRUE_CLOCK, grid) - 1)
    assert t_err.max() < 0.03 and p_err.max() < 0.03
    assert 0.2 < fit.params.beta < 0.6


def test_power_knob_curve_is_fitted() -> None:
    settings = [100.0, 125.0, 150.0, 175.0, 200.0, 225.0, 250.0]
    fit = _fit(TRUE_POWER, settings, 0.0)
    t_err = np.abs(step_time_s(fit.params, settings) / step_time_s(TRUE_POWER, settings) - 1)
    assert t_err.max() < 0.02
    # the limit caps the draw: predicted power never exceeds the limit
    assert np.all(power_w(fit.params, settings) <= np.array(settings) + 1e-6)


def test_uncertainty_shrinks_with_more_windows() -> None:
    few = _fit(TRUE_CLOCK, [1980.0, 1200.0], 0.01)
    many = _fit(TRUE_CLOCK, [float(s) for s in range(345, 1981, 105)], 0.01)
    sd_few = prediction_std(few, 700.0)[0][0]
    sd_many = prediction_std(many, 700.0)[0][0]
    assert sd_many < sd_few


def test_fit_rejects_empty_and_mixed_knobs() -> None:
    prior = default_prior(KnobKind.CLOCK, 1980.0)
    with pytest.raises(ConfigError, match="fit_model needs at least one measurement"):
        fit_model([], prior)
    wrong = Measurement(KnobKind.POWER, 300.0, 10, 1.0, 300.0)
    with pytest.raises(ConfigError, match="measurement of knob power given to a clock model"):
        fit_model([wrong], prior)


def test_normalised_residual_flags_a_profile_the_model_cannot_explain() -> None:
    settings = [100.0, 125.0, 150.0, 175.0, 200.0, 225.0, 250.0]
    smooth = _fit(TRUE_POWER, settings, 0.0)
    assert smooth.normalised_rms < 0.5
    bumps = [1.00, 1.09, 0.93, 1.06, 0.98, 1.08, 1.03]
    windows = [
        Measurement(KnobKind.POWER, s, 20, 20 * 0.05 * b, 20 * 0.05 * b * 40.0)
        for s, b in zip(settings, bumps, strict=True)
    ]
    prior = default_prior(KnobKind.POWER, 250.0, windows[-1])
    bumpy = fit_model(windows, prior, noise_rel=0.01)
    assert bumpy.normalised_rms > 2.0


@pytest.mark.parametrize("time_s", [float("nan"), float("inf")])
def test_fit_rejects_non_finite_windows(time_s: float) -> None:
    prior = default_prior(KnobKind.CLOCK, 1980.0)
    with pytest.raises(ConfigError, match="finite"):
        fit_model([Measurement(KnobKind.CLOCK, 1980.0, 20, time_s, 300.0)], prior)
