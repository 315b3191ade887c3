"""``/metrics``: every job in the Prometheus text format, so a cluster's Grafana can show it.

Metric families (one sample per job; ``job_name`` rather than ``job``, which Prometheus
itself sets to the scrape job)::

    caftm_job_info{job_name, site, status, state}   1
    caftm_job_power_watts{job_name, site}           power of the latest measured window (W)
    caftm_job_intensity_g_per_kwh{job_name, site}   intensity at the job's site (gCO2eq/kWh)
    caftm_job_energy_joules_total{job_name}         energy measured so far (J)
    caftm_job_carbon_grams_total{job_name}          carbon so far (gCO2eq)
    caftm_job_agnostic_carbon_grams{job_name}       the carbon-agnostic baseline (gCO2eq)
    caftm_job_moves_total{job_name}                 moves between sites
    caftm_job_pauses_total{job_name}                pauses in place
    caftm_job_steps_total{job_name}                 training steps measured

``state`` is the page's state card: the controller's state while a leg runs, else what the job
is doing between legs (``paused``, ``moving``, ``restarting``) or how it ended.

Built with ``prometheus_client``'s own collector types and exposition, read from the same
incremental views the page uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from caftm.ledger.feed import Scope

if TYPE_CHECKING:
    from caftm.dashboard.model import Board

__all__ = ["CONTENT_TYPE", "LedgerCollector", "metrics_text"]

CONTENT_TYPE = CONTENT_TYPE_LATEST


class LedgerCollector(Collector):
    """Collects one sample per job from a :class:`~caftm.dashboard.model.Board`."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "caftm_job_info", "A caftm job: its site, status and controller state (value 1).",
            labels=["job_name", "site", "status", "state"],
        )  # fmt: skip
        power = GaugeMetricFamily(
            "caftm_job_power_watts", "GPU power over the job's latest measured window (W).",
            labels=["job_name", "site"],
        )  # fmt: skip
        intensity = GaugeMetricFamily(
            "caftm_job_intensity_g_per_kwh",
            "Carbon intensity at the job's site in its latest window (gCO2eq/kWh).",
            labels=["job_name", "site"],
        )
        energy = CounterMetricFamily(
            "caftm_job_energy_joules", "Energy the job measured so far (J).", labels=["job_name"]
        )
        carbon = CounterMetricFamily(
            "caftm_job_carbon_grams", "Carbon the job emitted so far (gCO2eq).",
            labels=["job_name"],
        )  # fmt: skip
        agnostic = GaugeMetricFamily(
            "caftm_job_agnostic_carbon_grams",
            "What a carbon-agnostic run would have emitted so far (gCO2eq).",
            labels=["job_name"],
        )
        moves = CounterMetricFamily("caftm_job_moves", "Moves between sites.", labels=["job_name"])
        pauses = CounterMetricFamily("caftm_job_pauses", "Pauses in place.", labels=["job_name"])
        steps = CounterMetricFamily("caftm_job_steps", "Steps measured.", labels=["job_name"])
        for job in self.board.jobs():
            if job["kind"] != "job":
                continue
            _, view = self.board.view(Scope.of_job(job["name"]))
            name, site = view["name"], view["site"] or ""
            info.add_metric([name, site, view["status"], view["state"] or ""], 1.0)
            if view["gpu"]["power_w"] is not None:
                power.add_metric([name, site], view["gpu"]["power_w"])
            if view["intensity_now"] is not None:
                intensity.add_metric([name, site], view["intensity_now"])
            totals = view["totals"]
            energy.add_metric([name], totals["energy_j"])
            carbon.add_metric([name], totals["carbon_g"])
            if totals["agnostic_g"] is not None:
                agnostic.add_metric([name], totals["agnostic_g"])
            moves.add_metric([name], float(view["moves"]))
            pauses.add_metric([name], float(view["pauses"]))
            steps.add_metric([name], float(totals["steps"]))
        yield from (info, power, intensity, energy, carbon, agnostic, moves, pauses, steps)


def metrics_text(board: Board) -> bytes:
    """The exposition of every job, in the Prometheus text format (version 0.0.4).

    Raises:
        LedgerError: the ledger cannot be read.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(board))
    return generate_latest(registry)
