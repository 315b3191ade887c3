"""What a simulated job is: its length, GPUs, checkpoint, deadline, start site and time, and what
a move of it costs. Units: s, h, GB, Gbit/s, W."""

from __future__ import annotations

from dataclasses import dataclass

from caftm.control.migration import HOUR_S, MoveCost
from caftm.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MoveModel:
    """How long a move takes, from the checkpoint size.

    Defaults: torch.save wrote 0.7 GB/s and read 2.0 GB/s on our H100 probe (DESIGN.md); a
    1 Gbit/s path between sites; two minutes to restart the process elsewhere. The margins are
    the controller's defaults (:class:`~caftm.control.migration.MoveCost`).
    """

    bandwidth_gbit_s: float = 1.0
    write_gb_per_s: float = 0.7
    read_gb_per_s: float = 2.0
    restart_s: float = 120.0
    margin_g: float = 5.0
    margin_fraction: float = 0.05

    def cost(self, checkpoint_gb: float) -> MoveCost:
        """The :class:`MoveCost` of moving a checkpoint of ``checkpoint_gb`` GB."""
        if not self.bandwidth_gbit_s > 0 or not self.write_gb_per_s > 0:
            raise ConfigError("move bandwidth and write speed must be > 0")
        return MoveCost(
            checkpoint_s=checkpoint_gb / self.write_gb_per_s,
            transfer_s=checkpoint_gb * 8.0 / self.bandwidth_gbit_s,
            restart_s=self.restart_s + checkpoint_gb / self.read_gb_per_s,
            margin_g=self.margin_g,
            margin_fraction=self.margin_fraction,
        )


@dataclass(frozen=True, slots=True)
class SimJob:
    """One training job.

    Attributes:
        gpu_hours: the work, GPU-hours at the default (full) clock.
        start_site: where it starts; start_s: when (POSIX s).
        gpus: devices it runs on (its wall time at full clock is ``gpu_hours / gpus``).
        checkpoint_gb: size of a complete checkpoint, GB (sets the move time).
        deadline_factor: it must finish within this multiple of its full-clock wall time.
    """

    gpu_hours: float
    start_site: str
    start_s: float
    gpus: int = 1
    checkpoint_gb: float = 2.0
    deadline_factor: float = 1.5

    def __post_init__(self) -> None:
        if not self.gpu_hours > 0 or self.gpus < 1:
            raise ConfigError(f"job needs gpu_hours > 0 and gpus >= 1, got {self}")
        if not self.deadline_factor >= 1.0:
            raise ConfigError(f"job deadline factor must be >= 1, got {self.deadline_factor}")
        if not self.checkpoint_gb >= 0:
            raise ConfigError(f"job checkpoint size must be >= 0 GB, got {self.checkpoint_gb}")

    @property
    def work_s(self) -> float:
        """Wall time at full clock, s."""
        return self.gpu_hours * HOUR_S / self.gpus

    @property
    def deadline_s(self) -> float:
        """Latest finish, POSIX s."""
        return self.start_s + self.deadline_factor * self.work_s
