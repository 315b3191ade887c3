"""Forecast accuracy: rolling-origin back-test on the 2022 hourly data, per shipped zone.

For each zone the model is chosen on the first half of 2022 (origins every 73 h) and then
evaluated on the second half (origins every 25 h, so they cycle through the hours), each
forecast fitted only on the 35 days before its origin: nothing after an origin is seen.
Keys: median over zones of the chosen model's MAPE at 1, 6 and 24 h lead, and seasonal-naive's
MAPE at 24 h measured on the same origins (the baseline).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from caftm.signals.forecast import CANDIDATES, SeasonalNaive, backtest
from caftm.signals.profiles import ProfileSource, shipped_zones
from caftm.signals.traces import TraceSource, load_trace

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CAFTM_SHARED_DATA", REPO.parent / "shared" / "data"))
CSV = DATA / "carbon" / "ci_2022_hourly_lca_123zones.csv"
STEP_S = 3600
SEASON = 24
HORIZON = 24
WINDOW = 35 * SEASON
SPLIT = 182 * SEASON  # first half: model selection; second half: test


def _trace() -> tuple[TraceSource, str]:
    if CSV.exists():
        return load_trace(CSV), f"real: {CSV.name} (Electricity Maps 2022)"
    return ProfileSource(seed=0).trace(2022), "synthetic typical-year profiles (data absent)"


def run() -> dict[str, float | int | str | bool]:
    trace, data = _trace()
    zones = [z for z in shipped_zones() if z in trace.zones()]
    select_origins = list(range(WINDOW, SPLIT - HORIZON, 73))
    test_origins = list(range(SPLIT, trace.n_steps - HORIZON, 25))
    chosen: Counter[str] = Counter()
    best_mape, naive_mape = [], []
    for zone in zones:
        series = trace.series(zone)
        scores = {
            name: float(
                np.nanmean(
                    backtest(series, make, select_origins, HORIZON, STEP_S, window_steps=WINDOW)
                )
            )
            for name, make in CANDIDATES.items()
        }
        winner = min(scores, key=scores.__getitem__)
        chosen[winner] += 1
        errors = backtest(
            series, CANDIDATES[winner], test_origins, HORIZON, STEP_S, window_steps=WINDOW
        )
        naive = backtest(series, SeasonalNaive, test_origins, HORIZON, STEP_S, window_steps=WINDOW)
        best_mape.append(np.nanmean(errors, axis=0))
        naive_mape.append(np.nanmean(naive, axis=0))
    best = np.median(np.vstack(best_mape), axis=0)
    baseline = np.median(np.vstack(naive_mape), axis=0)
    per_zone_wins = sum(
        bool(b[HORIZON - 1] < n[HORIZON - 1]) for b, n in zip(best_mape, naive_mape, strict=True)
    )
    return {
        "data": data,
        "zones": len(zones),
        "test_origins_per_zone": len(test_origins),
        "mape_1h_pct": round(float(best[0]), 3),
        "mape_6h_pct": round(float(best[5]), 3),
        "mape_24h_pct": round(float(best[HORIZON - 1]), 3),
        "mape_mean_1_24h_pct": round(float(np.median([m.mean() for m in best_mape])), 3),
        "seasonal_naive_mape_1h_pct": round(float(baseline[0]), 3),
        "seasonal_naive_mape_24h_pct": round(float(baseline[HORIZON - 1]), 3),
        "ratio_24h_vs_seasonal_naive": round(float(best[HORIZON - 1] / baseline[HORIZON - 1]), 3),
        "beats_seasonal_naive_24h": bool(best[HORIZON - 1] < baseline[HORIZON - 1]),
        "zones_beating_seasonal_naive_24h": per_zone_wins,
        "model_counts": ", ".join(f"{name}: {n}" for name, n in chosen.most_common()),
    }
