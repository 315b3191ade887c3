"""The online optimiser of the Scaling state: a few profiled windows → the cheapest setting.

States and transitions (``settled`` is the only flag the controller needs)::

    profiling ──next_probe() returns None──► settled
    settled ──check_drift(): model off by > drift_tolerance──► profiling (windows dropped,
                                                                the fit becomes the prior)
    settled ──set_weights(): CI moved > reoptimize_ci_fraction──► settled (optimum recomputed)

Model and estimates: each window (``observe``) joins a per-setting bucket and the model of
:mod:`caftm.gpu.model` is re-fitted by regularised NLS. Every supported setting's log cost is
estimated from the model (Jacobian-based uncertainty, plus the misfit its residuals show beyond the
assumed noise) and, where the setting was measured, its own windows, by precision weighting.

Choice (:meth:`OnlineOptimizer.best`): minimise the model's cost over the continuous range with
``scipy.optimize.minimize_scalar`` (bounded, within the max-slowdown bound), then compare the two
supported neighbours of that point and every measured setting by their estimated cost.

Probes, in priority order: the largest setting (the slowdown reference), a mid-range point; the
choice if never measured; its unmeasured neighbours (≥ 8% of the range away: the choice must be a
*measured* local minimum, since real profiles have knees a smooth model misses); if the model cannot
explain the windows (residual RMS > 1.2 × the assumed noise: plateaus, bumps) every remaining
setting nearest first, else any setting whose lower confidence bound (κ = 2) beats the choice by
more than ``stop_gain``; finally another window for the choice or its closest measured rival while
the two cannot be told apart. Profiling stops when no rule fires or after ``max_probes`` windows.

Few settings (≤ ``screen_max_settings``, default 12: e.g. the 5–9 power limits of a V100 or A40):
screening by measurement (:mod:`caftm.gpu.screening`): one short window (``sweep_steps``, default
5) per setting, largest first, then ``screen_steps``-step windows (default 10) for a duel between
the choice and its strongest rival until no rival can beat it by more than ``screen_tolerance`` at
``screen_kappa`` standard deviations; with ``screen_guard`` a runner-up measured within that many
standard deviations of the choice gets a second window before settling (a close pair is not
decided by one short unlucky window). Easy cases stop soon after the sweep; close ones get their
steps. The screen's windows and budget are its own: ``steps_per_probe`` and ``max_probes`` (the
model-driven mode's, set by a controller config) do not shorten it; ``max_profiling_steps``
(default 30 steps per setting, 0.6 of an exhaustive sweep's 50) does.
:attr:`probe_steps` tells the caller how many steps the next window should run (a caller that
always runs ``steps_per_probe`` still works: estimates use each window's actual length).

Noise: every confidence bound above needs the relative noise of a window. ``noise_rel`` is the
prior; with ``learn_noise`` (the default) repeated windows at a setting refine it
(:mod:`caftm.gpu.noise`), so a quiet GPU settles sooner and a noisy one gets the windows it needs.

Limits (``bench/optimizer.py``): at 1% noise per 20-step window, deciding every case within 2% of
the best needs more steps than a quarter of the exhaustive sweep even for an allocator that knows
which settings are close; the real power-limit profiles are too bumpy for any smooth or monotone
model to pool settings. The screen therefore aims at the tolerance with confidence ``screen_kappa``
and stops at ``max_profiling_steps``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq, minimize_scalar

from caftm.errors import ConfigError
from caftm.gpu.base import KnobKind, Measurement
from caftm.gpu.cost import CostWeights, power_share, step_cost_array
from caftm.gpu.model import (
    NOISE_REF_STEPS,
    FitResult,
    ModelParams,
    ModelPrior,
    default_prior,
    fit_model,
    power_w,
    prediction_std,
    step_time_s,
)
from caftm.gpu.noise import NoiseEstimator
from caftm.gpu.screening import MeasuredCosts, duel_probe, measured_costs

__all__ = [
    "SCREEN_DUEL_STEPS",
    "SCREEN_MAX_SETTINGS",
    "SCREEN_STEPS_PER_SETTING",
    "SCREEN_SWEEP_STEPS",
    "OnlineOptimizer",
]

log = logging.getLogger(__name__)

_KAPPA = 2.0  # width of the confidence bound used to pick probes
_MIN_MISFIT = 0.002  # floor of the model's relative misfit
_INADEQUATE = 1.2  # residual RMS / assumed noise beyond which measurements replace the model
_LOCAL_STEP = 0.08  # trust-region neighbours sit at least this share of the range away
_CONFIRM_GAIN = 0.015  # re-measure rivals that could still beat the choice by more than this
SCREEN_MAX_SETTINGS = 12  # at most this many settings: screen by measurement (see module doc)
SCREEN_SWEEP_STEPS = 5  # window of the screening sweep, steps
SCREEN_DUEL_STEPS = 10  # window of a screening duel, steps
SCREEN_STEPS_PER_SETTING = 30  # screening budget per setting (exhaustive spends 50)


class OnlineOptimizer:
    """Learns T(s) and P(s) from a few windows and picks the setting of least cost.

    Args:
        settings: supported values of the knob (MHz or W); any order, at least one.
        knob: which knob the settings belong to.
        weights: cost weights (η, CI, CI_ref, P_ref, optional max slowdown).
        steps_per_probe: steps the controller should run per probe window.
        max_probes: most profiling windows before settling.
        reoptimize_ci_fraction: relative CI move that makes :meth:`set_weights` re-optimise.
        drift_tolerance: relative prediction error that makes :meth:`check_drift` re-open profiling.
        prior: model parameters to start from (e.g. from an earlier run); None = a weak default.
        noise_rel: relative std of a 20-step window's step time and power (1/√n scaling): the
            prior when ``learn_noise``, else fixed.
        learn_noise: learn the noise from repeated windows at a setting
            (:class:`caftm.gpu.noise.NoiseEstimator`; the prior counts as 4 degrees of freedom).
        stop_gain: stop profiling when no setting can beat the choice by more than this fraction.
        sweep_steps: window length of the screening sweep (few settings); None =
            :data:`SCREEN_SWEEP_STEPS`.
        screen_kappa: confidence (standard deviations) of the screening duel.
        screen_tolerance: the duel stops once no rival can beat the choice by more than this
            fraction.
        screen_max_settings: screen by measurement when there are at most this many settings.
        max_profiling_steps: most profiling steps before settling (None: no step cap when
            model-driven; :data:`SCREEN_STEPS_PER_SETTING` per setting when screening).
        screen_steps: window length of a screening duel; None = :data:`SCREEN_DUEL_STEPS`.
        screen_guard: before the screen settles, a setting measured within this many standard
            deviations of the choice and with fewer steps than the choice's confirmation gets one
            more window (0: off).

    Raises:
        ConfigError: empty or non-positive settings, or non-positive counts.
    """

    def __init__(
        self,
        settings: Sequence[float],
        knob: KnobKind,
        weights: CostWeights,
        *,
        steps_per_probe: int = 20,
        max_probes: int = 8,
        reoptimize_ci_fraction: float = 0.15,
        drift_tolerance: float = 0.1,
        prior: ModelParams | None = None,
        noise_rel: float = 0.015,
        learn_noise: bool = True,
        stop_gain: float = 0.005,
        sweep_steps: int | None = None,
        screen_kappa: float = 2.25,
        screen_tolerance: float = 0.02,
        screen_max_settings: int = SCREEN_MAX_SETTINGS,
        max_profiling_steps: int | None = None,
        screen_steps: int | None = None,
        screen_guard: float = 0.0,
    ) -> None:
        values = sorted({float(s) for s in settings})
        if not values:
            raise ConfigError("OnlineOptimizer needs at least one supported setting")
        bad = [v for v in values if not 0 < v < math.inf]
        if bad:
            raise ConfigError(f"settings must be positive finite numbers (MHz or W), got {bad[0]}")
        if steps_per_probe < 1 or max_probes < 1:
            raise ConfigError("steps_per_probe and max_probes must be >= 1")
        # written as `not x > 0` so that NaN fails too
        if not (reoptimize_ci_fraction >= 0 and drift_tolerance > 0 and noise_rel > 0):
            raise ConfigError("reoptimize_ci_fraction >= 0, drift_tolerance > 0, noise_rel > 0")
        if not stop_gain >= 0:
            raise ConfigError(f"stop_gain must be >= 0, got {stop_gain}")
        if sweep_steps is not None and sweep_steps < 1:
            raise ConfigError(f"sweep_steps must be >= 1, got {sweep_steps}")
        if screen_steps is not None and screen_steps < 1:
            raise ConfigError(f"screen_steps must be >= 1, got {screen_steps}")
        if not screen_guard >= 0:
            raise ConfigError(f"screen_guard must be >= 0, got {screen_guard}")
        if not (screen_kappa > 0 and screen_tolerance > 0):
            raise ConfigError("screen_kappa and screen_tolerance must be > 0")
        if max_profiling_steps is not None and max_profiling_steps < 1:
            raise ConfigError(f"max_profiling_steps must be >= 1, got {max_profiling_steps}")
        self.settings = np.array(values)
        self.knob = knob
        self.steps_per_probe = steps_per_probe
        self.max_probes = max_probes
        self.reoptimize_ci_fraction = reoptimize_ci_fraction
        self.drift_tolerance = drift_tolerance
        self.noise_rel = noise_rel
        self.learn_noise = learn_noise
        self._noise = NoiseEstimator(noise_rel)
        self.stop_gain = stop_gain
        self.sweep_steps = sweep_steps if sweep_steps is not None else SCREEN_SWEEP_STEPS
        self.screen_steps = screen_steps if screen_steps is not None else SCREEN_DUEL_STEPS
        self.screen_guard = screen_guard
        self.screen_kappa = screen_kappa
        self.screen_tolerance = screen_tolerance
        self.screening = len(values) <= screen_max_settings
        if max_profiling_steps is None and self.screening:
            max_profiling_steps = SCREEN_STEPS_PER_SETTING * len(values)
        self.max_profiling_steps = max_profiling_steps
        self._probe_steps = steps_per_probe
        self._weights = weights
        self._ci_at_opt = weights.intensity_g_per_kwh
        self._prior_params = prior
        self._buckets: dict[float, Measurement] = {}
        self._probes = 0
        self._profiling_steps = 0
        self._settled = len(values) == 1
        self._fit: FitResult | None = None
        self._best: float | None = None

    # -- public API ------------------------------------------------------------------------------
    @property
    def settled(self) -> bool:
        """True once profiling is over (until drift re-opens it)."""
        return self._settled

    @property
    def weights(self) -> CostWeights:
        return self._weights

    @property
    def probes_used(self) -> int:
        """Profiling windows observed since the last (re)start."""
        return self._probes

    @property
    def profiling_steps(self) -> int:
        """Steps spent in profiling windows since construction."""
        return self._profiling_steps

    @property
    def probe_steps(self) -> int:
        """Recommended length (steps) of the window for the setting :meth:`next_probe` returned."""
        return self._probe_steps

    @property
    def fit(self) -> FitResult | None:
        """The current model fit (None before the first window)."""
        self._refit()
        return self._fit

    @property
    def noise(self) -> float:
        """Relative std of a 20-step window in use: learned from repeats, or ``noise_rel``."""
        return self._noise.estimate() if self.learn_noise else self.noise_rel

    def next_probe(self) -> float | None:
        """The setting to profile next, or None once settled."""
        if self._settled:
            return None
        self._probe_steps = self.steps_per_probe
        if self.screening:
            probe = self._screen_probe()
            if probe is None:
                self._settle()
            return probe
        s_max = float(self.settings[-1])
        if not self._buckets:
            return s_max
        if self._out_of_budget():
            self._settle()
            return None
        if len(self._buckets) == 1 and len(self.settings) > 2:
            span = s_max - float(self.settings[0])
            return self._nearest(float(self.settings[0]) + 0.5 * span)
        probe = self._most_promising()
        if probe is None:
            self._settle()
        return probe

    def observe(self, m: Measurement) -> None:
        """Feed a profiled window (any setting; merged with earlier windows at that setting)."""
        self._add(m)
        self._probes += 1
        self._profiling_steps += m.steps

    def best(self) -> float:
        """Best supported setting under the fitted model, the measurements and current weights."""
        if self._best is None:
            self._best = self._choose()
        return self._best

    def set_weights(self, weights: CostWeights) -> bool:
        """Adopt new weights; re-optimise only if CI moved more than ``reoptimize_ci_fraction``
        since the last optimisation (or η, the references or the slowdown bound changed).

        Returns:
            True if re-optimised and the chosen setting changed.
        """
        old = self._weights
        self._weights = weights
        base = max(self._ci_at_opt, 1e-9)
        moved = abs(weights.intensity_g_per_kwh - self._ci_at_opt) / base
        other = (old.eta, old.ref_intensity_g_per_kwh, old.ref_power_w, old.max_slowdown) != (
            weights.eta,
            weights.ref_intensity_g_per_kwh,
            weights.ref_power_w,
            weights.max_slowdown,
        )
        if moved <= self.reoptimize_ci_fraction and not other:
            return False
        previous = self.best()
        self._ci_at_opt = weights.intensity_g_per_kwh
        self._best = self._choose()
        log.debug("re-optimised for CI %.0f: %g -> %g", self._ci_at_opt, previous, self._best)
        return self._best != previous

    def check_drift(self, m: Measurement) -> bool:
        """Compare a window at the applied setting with the model's prediction.

        Returns:
            True if time or power is off by more than ``drift_tolerance`` (relative): the windows so
            far are dropped, the fit becomes the prior, and profiling re-opens. Otherwise the window
            joins the data and False is returned.
        """
        t_pred, p_pred = self.predict(m.setting)
        error = max(abs(m.step_time_s / t_pred - 1.0), abs(m.avg_power_w / p_pred - 1.0))
        if error <= self.drift_tolerance:
            self._add(m)
            return False
        log.info("model drift %.1f%% at %g: re-profiling", 100 * error, m.setting)
        if self._fit is not None:
            self._prior_params = self._fit.params
        self._buckets.clear()
        self._noise.clear()
        self._fit = None
        self._best = None
        self._probes = 0
        self._settled = len(self.settings) == 1
        return True

    def predict(self, setting: float) -> tuple[float, float]:
        """Model prediction at ``setting``: (step_time_s, power_w).

        Raises:
            ConfigError: before any window was observed.
        """
        self._refit()
        if self._fit is None:
            raise ConfigError("OnlineOptimizer.predict needs at least one observed window")
        p = self._fit.params
        return float(step_time_s(p, setting)), float(power_w(p, setting))

    # -- internals ---------------------------------------------------------------------------------
    def _nearest(self, value: float) -> float:
        return float(self.settings[int(np.argmin(np.abs(self.settings - value)))])

    def _settle(self) -> None:
        self._settled = True
        self._best = None

    def _noise_of(self, steps: int) -> float:
        """Relative std of a window of ``steps`` steps."""
        return self.noise * math.sqrt(NOISE_REF_STEPS / steps)

    def _add(self, m: Measurement) -> None:
        if m.knob is not self.knob:
            raise ConfigError(f"window of knob {m.knob} fed to a {self.knob} optimiser")
        if m.steps < 1 or not (0 < m.time_s < math.inf and 0 < m.energy_j < math.inf):
            raise ConfigError(
                f"window at {m.setting} needs steps >= 1 and finite positive time and energy, got "
                f"{m.steps} steps, {m.time_s} s, {m.energy_j} J"
            )
        key = float(m.setting)
        self._noise.add(key, m.steps, m.time_s, m.energy_j)
        old = self._buckets.get(key)
        if old is not None:
            m = Measurement(
                self.knob,
                key,
                old.steps + m.steps,
                old.time_s + m.time_s,
                old.energy_j + m.energy_j,
            )
        self._buckets[key] = m
        self._fit = None
        self._best = None

    def _prior(self) -> ModelPrior:
        s_max = float(self.settings[-1])
        ref = self._buckets.get(s_max) or max(self._buckets.values(), key=lambda m: m.setting)
        prior = default_prior(self.knob, s_max, ref)
        if self._prior_params is None:
            return prior
        centre = self._prior_params
        return ModelPrior(centre=centre, std=prior.std)

    def _refit(self) -> None:
        if self._fit is not None or not self._buckets:
            return
        self._fit = fit_model(list(self._buckets.values()), self._prior(), noise_rel=self.noise)

    def _estimates(
        self, *, with_misfit: bool = True
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Per supported setting: estimated log cost, its std, and estimated step time (s).

        ``with_misfit`` adds the model's misfit (residual beyond the assumed noise) to the model's
        uncertainty; without it only the fit's own uncertainty counts (used far from the choice,
        where a misfit of the curve's fine shape does not make a distant setting a contender).
        """
        self._refit()
        assert self._fit is not None
        fit = self._fit
        s = self.settings
        t_model = step_time_s(fit.params, s)
        p_model = power_w(fit.params, s)
        sd_t, sd_p = prediction_std(fit, s)
        w = power_share(p_model, self._weights)
        misfit = _MIN_MISFIT
        if with_misfit:
            # misfit beyond a 20-step window's noise (deliberately conservative for shorter ones)
            misfit = max(misfit, math.sqrt(max(fit.residual_rms**2 - self.noise**2, 0.0)))
        mu = np.log(np.maximum(step_cost_array(t_model, p_model, self._weights), 1e-300))
        var = sd_t**2 + (w * sd_p) ** 2 + misfit**2 * (1.0 + w**2)
        t_est = t_model.copy()
        inadequate = self._model_inadequate()
        for i, setting in enumerate(s):
            m = self._buckets.get(float(setting))
            if m is None:
                continue
            sigma = self._noise_of(m.steps)
            var_m = sigma**2 * (1.0 + w[i] ** 2)
            # The fit already used this window: never let the model outweigh one window here,
            # and where the model cannot explain the profile, trust the measurements alone.
            var_i = max(var[i], self.noise**2 * (1.0 + w[i] ** 2))
            if inadequate:
                var_i = math.inf
            cost_m = float(step_cost_array(m.step_time_s, m.avg_power_w, self._weights))
            mu_m = math.log(max(cost_m, 1e-300))
            precision = 1.0 / var_i + 1.0 / var_m
            mu[i] = (mu[i] / var_i + mu_m / var_m) / precision if math.isfinite(var_i) else mu_m
            var[i] = 1.0 / precision
            t_est[i] = m.step_time_s
        return mu, np.sqrt(var), t_est

    def _feasible(self, t_est: NDArray[np.float64]) -> NDArray[np.bool_]:
        limit = self._weights.max_slowdown
        if limit is None:
            return np.ones(len(self.settings), dtype=bool)
        ok = t_est <= (1.0 + limit) * t_est[-1] * (1.0 + 1e-9)
        ok[-1] = True
        return np.asarray(ok, dtype=bool)

    def _choose(self) -> float:
        s_max = float(self.settings[-1])
        if not self._buckets or len(self.settings) == 1:
            return s_max
        if self.screening:
            return float(self.settings[self._measured().best])
        mu, _, t_est = self._estimates()
        feasible = self._feasible(t_est)
        assert self._fit is not None
        params = self._fit.params
        lo = float(self.settings[0])
        if self._weights.max_slowdown is not None:
            bound = (1.0 + self._weights.max_slowdown) * float(t_est[-1])
            if float(step_time_s(params, s_max)) >= bound:
                lo = s_max  # the model is slower than the measured bound even at s_max
            elif float(step_time_s(params, lo)) > bound:
                lo = float(brentq(lambda x: float(step_time_s(params, x)) - bound, lo, s_max))
        if lo < s_max:
            res = minimize_scalar(
                lambda x: float(
                    step_cost_array(step_time_s(params, x), power_w(params, x), self._weights)
                ),
                bounds=(lo, s_max),
                method="bounded",
            )
            s_cont = float(res.x)
        else:
            s_cont = s_max
        above = int(np.searchsorted(self.settings, s_cont))
        neighbours = {max(above - 1, 0), min(above, len(self.settings) - 1)}
        measured = {i for i, s in enumerate(self.settings) if float(s) in self._buckets}
        candidates = [i for i in neighbours | measured if feasible[i]] or [len(self.settings) - 1]
        best = min(candidates, key=lambda i: (mu[i], -self.settings[i]))
        return float(self.settings[best])

    def _measured(self) -> MeasuredCosts:
        return measured_costs(self.settings, self._buckets, self._weights, self._noise_of)

    def _out_of_budget(self) -> bool:
        cap = self.max_profiling_steps
        if cap is not None and self._profiling_steps >= cap:
            return True
        return not self.screening and self._probes >= self.max_probes

    def _screen_probe(self) -> float | None:
        """Screening (few settings): sweep every setting once, largest first, with short windows;
        then LUCB duels between the choice and its strongest rival until none can beat it by
        more than ``screen_tolerance`` (or the window/step budget is spent)."""
        unmeasured = [float(s) for s in self.settings[::-1] if float(s) not in self._buckets]
        if unmeasured:
            self._probe_steps = self.sweep_steps
            return unmeasured[0]
        if self._out_of_budget():
            return None
        self._probe_steps = self.screen_steps
        return duel_probe(
            self.settings,
            self._buckets,
            self._measured(),
            kappa=self.screen_kappa,
            tolerance=self.screen_tolerance,
            confirm_steps=self.sweep_steps + self.screen_steps,
            guard=self.screen_guard,
        )

    def _local_neighbours(self, i: int) -> list[int]:
        """Nearest setting on each side of index ``i`` at least LOCAL_STEP of the range away."""
        span = float(self.settings[-1] - self.settings[0])
        here = float(self.settings[i])
        below = [j for j in range(i - 1, -1, -1) if here - self.settings[j] >= _LOCAL_STEP * span]
        above = [
            j
            for j in range(i + 1, len(self.settings))
            if self.settings[j] - here >= _LOCAL_STEP * span
        ]
        return below[:1] + above[:1]

    def _most_promising(self) -> float | None:
        """The setting worth a probe, or None when none can beat the choice by > stop_gain.

        Order: the choice itself if never measured; then its unmeasured local neighbours (a trust
        region: the choice must be a measured local minimum); then any other unmeasured setting
        that could beat it by the fit's own uncertainty.
        """
        choice = self.best()
        if choice not in self._buckets:
            return choice
        threshold = math.log1p(self.stop_gain)
        i_best = int(np.searchsorted(self.settings, choice))
        mu, sd, t_est = self._estimates(with_misfit=True)
        feasible = self._feasible(t_est)
        measured = np.array([float(x) in self._buckets for x in self.settings])
        local = [j for j in self._local_neighbours(i_best) if feasible[j] and not measured[j]]
        if local:
            # Verify the choice is a measured local minimum: real profiles have knees and bumps
            # a smooth model misses, so an unmeasured neighbour is always worth one window.
            return float(self.settings[min(local, key=lambda j: mu[j] - _KAPPA * sd[j])])
        assert self._fit is not None
        if self._model_inadequate():
            # The model cannot explain the profile (plateaus, bumps): screen the rest by measuring.
            rest = [j for j in range(len(self.settings)) if feasible[j] and not measured[j]]
            if rest:
                return float(self.settings[min(rest, key=lambda j: abs(j - i_best))])
            return self._contender(i_best, mu, sd, measured & feasible)
        mu_g, sd_g, _ = self._estimates(with_misfit=False)
        gain = mu_g[i_best] - (mu_g - _KAPPA * sd_g)
        gain[measured | ~feasible] = -np.inf
        j = int(np.argmax(gain))
        if gain[j] > threshold:
            return float(self.settings[j])
        return self._contender(i_best, mu, sd, measured & feasible)

    def _model_inadequate(self) -> bool:
        """True when the residuals show a profile the smooth model cannot explain."""
        self._refit()
        return (
            self._fit is not None
            and len(self._buckets) >= 3
            and self._fit.normalised_rms > _INADEQUATE
        )

    def _contender(
        self,
        i_best: int,
        mu: NDArray[np.float64],
        sd: NDArray[np.float64],
        candidates: NDArray[np.bool_],
    ) -> float | None:
        """Another window where the choice is not yet clear: among the choice and the measured
        rivals that could still beat it by more than ``_CONFIRM_GAIN``, the least measured one."""
        threshold = math.log1p(_CONFIRM_GAIN)
        rivals = [
            j
            for j in (int(k) for k in np.flatnonzero(candidates))
            if j != i_best
            and _KAPPA * math.hypot(sd[j], sd[i_best]) - (mu[j] - mu[i_best]) > threshold
        ]
        if not rivals:
            return None
        pool = [*rivals, i_best]
        steps = {j: self._buckets[float(self.settings[j])].steps for j in pool}
        return float(self.settings[min(pool, key=lambda j: (steps[j], mu[j]))])
