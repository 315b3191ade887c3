"""The one home of caftm's GPU performance/power model and its fitting.

Clock knob (setting = locked SM clock f, MHz), with r = f / f_max the clock fraction::

    T(r) = T_max · (β + (1 − β) / r)          step time, s   (1 − β: how compute-bound the work is)
    P(r) = P_idle + P_dyn · r^γ               average power, W

Power-limit knob (setting = limit L, W): the limit caps the draw, so the GPU lowers its clock until
``P_idle + P_dyn · r^γ`` fits under L. The clock fraction the limit allows is
``x(L) = ((L − P_idle) / P_dyn)^(1/γ)``, softly capped at 1 (the GPU cannot boost past f_max)::

    r(L) = x / (1 + x^k)^(1/k)     with k = 10 (a smooth min(x, 1); r ≤ x so P(r) ≤ L always)

and T, P follow from r as above. The soft cap matches what the Zeus power-limit traces show: the
average power sits a little under the limit when it binds, and step time still improves slightly as
the limit approaches the unconstrained draw ``P_idle + P_dyn``.

Fitting (:func:`fit_model`) is non-linear least squares (``scipy.optimize.least_squares``) on
log-residuals of step time and power, plus prior residuals that pull each parameter toward a prior
value (regularisation), with bounds β ∈ [0, 1], γ ∈ [1, 4], P_idle ≥ 0. The parameter covariance
comes from the Jacobian at the solution and drives probe choice via :func:`prediction_std`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares

from caftm.errors import ConfigError
from caftm.gpu.base import KnobKind, Measurement

__all__ = [
    "NOISE_REF_STEPS",
    "FitResult",
    "ModelParams",
    "ModelPrior",
    "clock_fraction",
    "default_prior",
    "fit_model",
    "power_at_fraction",
    "power_w",
    "prediction_std",
    "step_time_s",
    "time_at_fraction",
]

log = logging.getLogger(__name__)

#: Sharpness of the smooth min(x, 1) in the power-limit model.
SOFT_CAP_K = 10.0
#: Window length (steps) whose relative noise is ``noise_rel``; longer windows are quieter (1/√n).
NOISE_REF_STEPS = 20
#: Lowest clock fraction the model allows (keeps T finite when a limit sits near P_idle).
MIN_FRACTION = 0.05


@dataclass(frozen=True, slots=True)
class ModelParams:
    """Parameters of the model for one job on one GPU.

    Attributes:
        knob: which setting the model is expressed in.
        setting_max: f_max (MHz) for the clock knob, or the largest limit (W) for the power knob.
        t_max_s: step time at full clock (r = 1), s.
        beta: share of the step that does not scale with the clock, in [0, 1].
        p_idle_w: power that does not scale with the clock, W.
        p_dyn_w: extra power at full clock, W (so P(f_max) = p_idle_w + p_dyn_w).
        gamma: exponent of power in the clock fraction, in [1, 4].
    """

    knob: KnobKind
    setting_max: float
    t_max_s: float
    beta: float
    p_idle_w: float
    p_dyn_w: float
    gamma: float

    def as_vector(self) -> NDArray[np.float64]:
        """(log t_max_s, beta, p_idle_w, p_dyn_w, gamma): the fitted coordinates."""
        return np.array(
            [np.log(self.t_max_s), self.beta, self.p_idle_w, self.p_dyn_w, self.gamma], dtype=float
        )

    def with_vector(self, theta: ArrayLike) -> ModelParams:
        """A copy with the fitted coordinates replaced (inverse of :meth:`as_vector`)."""
        v = np.asarray(theta, dtype=float)
        return replace(
            self,
            t_max_s=float(np.exp(v[0])),
            beta=float(v[1]),
            p_idle_w=float(v[2]),
            p_dyn_w=float(v[3]),
            gamma=float(v[4]),
        )


@dataclass(frozen=True, slots=True)
class ModelPrior:
    """Prior belief: centre values and standard deviations in the fitted coordinates."""

    centre: ModelParams
    std: tuple[float, float, float, float, float]  # log t_max, beta, p_idle_w, p_dyn_w, gamma


@dataclass(frozen=True, slots=True)
class FitResult:
    """A fitted model with its uncertainty.

    Attributes:
        params: the fitted parameters.
        covariance: 5×5 covariance of (log t_max_s, beta, p_idle_w, p_dyn_w, gamma).
        residual_rms: root-mean-square relative residual of the measurements (time and power).
        normalised_rms: the same in units of each window's assumed noise (≈ 1 or below when the
            model explains the windows up to noise; well above 1 when it cannot).
        n_measurements: how many windows the fit used.
    """

    params: ModelParams
    covariance: NDArray[np.float64]
    residual_rms: float
    normalised_rms: float
    n_measurements: int


def clock_fraction(
    params: ModelParams, setting: ArrayLike, *, soft_cap_k: float | None = SOFT_CAP_K
) -> NDArray[np.float64]:
    """Effective clock fraction r ∈ [MIN_FRACTION, 1] at ``setting`` (MHz or W).

    ``soft_cap_k`` (power knob only) is the sharpness of the smooth min(x, 1); None = a hard min,
    as the simulated GPU uses.
    """
    s = np.asarray(setting, dtype=float)
    if params.knob is KnobKind.CLOCK:
        return np.asarray(np.clip(s / params.setting_max, MIN_FRACTION, 1.0), dtype=float)
    headroom = np.maximum(s - params.p_idle_w, 1e-9) / max(params.p_dyn_w, 1e-9)
    x = np.maximum(headroom, MIN_FRACTION**params.gamma) ** (1.0 / params.gamma)
    r = (
        np.minimum(x, 1.0)
        if soft_cap_k is None
        else x / (1.0 + x**soft_cap_k) ** (1.0 / soft_cap_k)
    )
    return np.asarray(np.clip(r, MIN_FRACTION, 1.0), dtype=float)


def time_at_fraction(params: ModelParams, fraction: ArrayLike) -> NDArray[np.float64]:
    """Step time (s) at clock fraction r: T_max · (β + (1 − β) / r)."""
    r = np.asarray(fraction, dtype=float)
    return np.asarray(params.t_max_s * (params.beta + (1.0 - params.beta) / r), dtype=float)


def power_at_fraction(params: ModelParams, fraction: ArrayLike) -> NDArray[np.float64]:
    """Average power (W) at clock fraction r: P_idle + P_dyn · r^γ."""
    r = np.asarray(fraction, dtype=float)
    return np.asarray(params.p_idle_w + params.p_dyn_w * r**params.gamma, dtype=float)


def step_time_s(params: ModelParams, setting: ArrayLike) -> NDArray[np.float64]:
    """Predicted step time (s) at ``setting``."""
    return time_at_fraction(params, clock_fraction(params, setting))


def power_w(params: ModelParams, setting: ArrayLike) -> NDArray[np.float64]:
    """Predicted average power (W) at ``setting``."""
    return power_at_fraction(params, clock_fraction(params, setting))


def default_prior(
    knob: KnobKind, setting_max: float, reference: Measurement | None = None
) -> ModelPrior:
    """A weak prior, centred on ``reference`` (a window at or near the max setting) when given.

    Centres: β = 0.3, γ = 2.2, P_idle = 25% of the reference power (the rest dynamic); without a
    reference, an H100-like 0.03 s / 500 W step.
    """
    if setting_max <= 0:
        raise ConfigError(f"model setting_max must be > 0, got {setting_max}")
    t_ref, p_ref = (
        (0.03, 500.0) if reference is None else (reference.step_time_s, reference.avg_power_w)
    )
    centre = ModelParams(
        knob=knob,
        setting_max=setting_max,
        t_max_s=t_ref,
        beta=0.3,
        p_idle_w=0.25 * p_ref,
        p_dyn_w=0.75 * p_ref,
        gamma=2.2,
    )
    std = (0.5, 0.35, 0.25 * p_ref, 0.6 * p_ref, 1.0)
    return ModelPrior(centre=centre, std=std)


_LOWER = np.array([-np.inf, 0.0, 0.0, 1e-6, 1.0])
_UPPER = np.array([np.inf, 1.0, np.inf, np.inf, 4.0])


def fit_model(
    measurements: Sequence[Measurement],
    prior: ModelPrior,
    *,
    noise_rel: float = 0.02,
) -> FitResult:
    """Fit the model to profiled windows by regularised non-linear least squares.

    Args:
        measurements: windows (any knob value; all for ``prior.centre.knob``).
        prior: centre and spread of the regularisation toward prior values.
        noise_rel: assumed relative std of a 20-step window's step time and power; a window of n
            steps counts with std ``noise_rel · √(20 / n)``.

    Returns:
        The fitted parameters, their covariance (from the Jacobian) and the residual RMS.

    Raises:
        ConfigError: no measurements, a measurement of another knob, or non-positive values.
    """
    centre = prior.centre
    if not measurements:
        raise ConfigError("fit_model needs at least one measurement")
    for m in measurements:
        if m.knob is not centre.knob:
            raise ConfigError(f"measurement of knob {m.knob} given to a {centre.knob} model")
        if m.steps <= 0 or not (0 < m.time_s < np.inf and 0 < m.energy_j < np.inf):
            raise ConfigError(
                f"measurement at {m.setting} needs positive steps and finite positive time/energy"
            )
    settings = np.array([m.setting for m in measurements], dtype=float)
    log_t = np.log([m.step_time_s for m in measurements])
    log_p = np.log([m.avg_power_w for m in measurements])
    sigma = np.array([noise_rel * np.sqrt(NOISE_REF_STEPS / m.steps) for m in measurements])
    sigma = np.maximum(sigma, 1e-4)
    theta0 = np.clip(centre.as_vector(), _LOWER + 1e-9, _UPPER - 1e-9)
    prior_std = np.asarray(prior.std, dtype=float)

    def residuals(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        p = centre.with_vector(theta)
        r = clock_fraction(p, settings)  # once for both predictions
        rt = (np.log(time_at_fraction(p, r)) - log_t) / sigma
        rp = (np.log(power_at_fraction(p, r)) - log_p) / sigma
        return np.concatenate([rt, rp, (theta - theta0) / prior_std])

    result = least_squares(residuals, theta0, bounds=(_LOWER, _UPPER), x_scale=prior_std)
    params = centre.with_vector(result.x)
    jac = np.asarray(result.jac, dtype=float)
    try:
        covariance = np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        covariance = np.diag(prior_std**2)
    n = len(measurements)
    data_res = result.fun[: 2 * n] * np.concatenate([sigma, sigma])
    rms = float(np.sqrt(np.mean(data_res**2)))
    log.debug("fitted %s from %d windows (residual rms %.4f)", params, n, rms)
    normalised = float(np.sqrt(np.mean(result.fun[: 2 * n] ** 2)))
    return FitResult(
        params=params,
        covariance=covariance,
        residual_rms=rms,
        normalised_rms=normalised,
        n_measurements=n,
    )


def prediction_std(
    fit: FitResult, setting: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Relative standard deviations (of log T and log P) of the predictions at ``setting``.

    The delta method with a numerical Jacobian of the predictions in the fitted coordinates.
    """
    s = np.atleast_1d(np.asarray(setting, dtype=float))
    theta = fit.params.as_vector()
    r = clock_fraction(fit.params, s)
    base_t = np.log(time_at_fraction(fit.params, r))
    base_p = np.log(power_at_fraction(fit.params, r))
    grad_t = np.empty((len(theta), len(s)))
    grad_p = np.empty_like(grad_t)
    for i in range(len(theta)):
        h = 1e-5 * max(1.0, abs(theta[i]))
        shifted = theta.copy()
        shifted[i] = shifted[i] + h if shifted[i] + h <= _UPPER[i] else shifted[i] - h
        step = shifted[i] - theta[i]
        p = fit.params.with_vector(shifted)
        r = clock_fraction(p, s)
        grad_t[i] = (np.log(time_at_fraction(p, r)) - base_t) / step
        grad_p[i] = (np.log(power_at_fraction(p, r)) - base_p) / step
    var_t = np.einsum("is,ij,js->s", grad_t, fit.covariance, grad_t)
    var_p = np.einsum("is,ij,js->s", grad_p, fit.covariance, grad_p)
    return np.sqrt(np.maximum(var_t, 0.0)), np.sqrt(np.maximum(var_p, 0.0))
