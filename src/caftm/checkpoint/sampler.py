"""A DataLoader sampler that can stop and resume in the middle of an epoch.

Usage::

    sampler = ResumableSampler(len(dataset), shuffle=True, seed=1234)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler,
                        generator=torch.Generator())   # see the note below
    while sampler.epoch < num_epochs:
        for batch in loader:     # after a restore, continues where the checkpoint was taken
            ...

Each epoch's order is a permutation drawn from ``seed + epoch`` (like ``DistributedSampler``),
so it does not depend on, or consume, the global RNG. With ``world_size > 1`` every rank gets
an equal, disjoint share (padded by repeating the first indices, or trimmed with
``drop_last``). When an iterator runs to its end the epoch advances by itself; calling
:meth:`set_epoch` each epoch, as with ``DistributedSampler``, works too.

Note:
    A ``DataLoader`` draws a seed for its workers every time an iterator is created, from
    ``generator=`` or else from the *global* torch RNG. A resumed run creates that iterator at
    a different point than the original one, so give the loader its own ``generator=``
    (``torch.Generator()``) to keep the global RNG — and so dropout — bit-exact.

    The sampler counts the indices it hands out. With ``num_workers > 0`` the loader fetches
    ahead; call :meth:`record_consumed` with the number of samples of this epoch the training
    loop has actually used before saving.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import Sampler

from caftm.checkpoint._ints import as_int
from caftm.errors import CheckpointError, ConfigError

__all__ = ["ResumableSampler"]

logger = logging.getLogger(__name__)


# torch.Generator.manual_seed takes [-2**63, 2**64); leave room for the epochs added to it
_SEED_MIN, _SEED_MAX = -(2**63), 2**64 - 2**32


class ResumableSampler(Sampler[int]):
    """Shuffling, shardable sampler whose position survives a checkpoint.

    Args:
        dataset_len: Number of samples in the dataset.
        shuffle: Draw a new permutation each epoch (else sequential order).
        seed: Shuffle seed; epoch ``e`` uses ``seed + e``.
        drop_last: With ``world_size > 1``, trim the tail so ranks split evenly instead of
            padding with repeated samples.
        rank: This process's rank, ``0 <= rank < world_size``.
        world_size: Number of processes sharing the dataset.

    Raises:
        ConfigError: Sizes, rank or seed not integers, or out of range.
    """

    def __init__(
        self,
        dataset_len: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        dataset_len = as_int("dataset_len", dataset_len)
        rank, world_size = as_int("rank", rank), as_int("world_size", world_size)
        seed = as_int("seed", seed)
        if not _SEED_MIN <= seed <= _SEED_MAX:
            raise ConfigError(f"seed must be in [{_SEED_MIN}, {_SEED_MAX}], got {seed}")
        if dataset_len < 0:
            raise ConfigError(f"dataset_len must be >= 0, got {dataset_len}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(
                f"need 0 <= rank < world_size, got rank={rank} world_size={world_size}"
            )
        self.dataset_len = dataset_len
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._index = 0
        self._consumed: int | None = None

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        if self.drop_last:
            return self.dataset_len // self.world_size
        return -(-self.dataset_len // self.world_size)

    @property
    def index(self) -> int:
        """Position within this rank's share of the current epoch (samples handed out)."""
        return self._index

    def __len__(self) -> int:
        return self.num_samples

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's full index order for ``epoch``."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + epoch)
            order = torch.randperm(self.dataset_len, generator=generator).tolist()
        else:
            order = list(range(self.dataset_len))
        total = self.num_samples * self.world_size
        if total > len(order) and order:
            repeats = -(-(total - len(order)) // len(order))
            order = order + (order * repeats)[: total - len(order)]
        order = order[:total]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices(self.epoch)
        while self._index < len(indices):
            position = self._index
            self._index += 1
            yield indices[position]
        self.epoch += 1
        self._index = 0
        self._consumed = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; keeps the mid-epoch position when ``epoch`` is the current one.

        Raises:
            ConfigError: ``epoch`` is not an integer.
        """
        epoch = as_int("epoch", epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self._index = 0
            self._consumed = None

    def record_consumed(self, num_samples: int) -> None:
        """Say how many samples of this epoch (this rank) training has used; see the note.

        Raises:
            ConfigError: ``num_samples`` is not an integer in ``[0, num_samples]``.
        """
        num_samples = as_int("num_samples", num_samples)
        if not 0 <= num_samples <= self.num_samples:
            raise ConfigError(f"num_samples must be in [0, {self.num_samples}], got {num_samples}")
        self._consumed = num_samples

    def state_dict(self) -> dict[str, Any]:
        """Epoch, position and shuffle settings (JSON-able)."""
        return {
            "epoch": self.epoch,
            "index": self._index if self._consumed is None else self._consumed,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "dataset_len": self.dataset_len,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at the saved epoch and position; the saved shuffle seed wins.

        A different ``world_size`` maps the position to the same number of samples seen in
        total (not bit-exact; logged as a warning).

        Raises:
            CheckpointError: The dataset length differs or the state is malformed.
        """
        try:
            dataset_len = int(state["dataset_len"])
            epoch, index = int(state["epoch"]), int(state["index"])
            seed, shuffle = int(state["seed"]), bool(state["shuffle"])
            saved_world_size = int(state["world_size"])
            drop_last = bool(state["drop_last"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"invalid sampler state in checkpoint: {e}") from e
        if epoch < 0 or index < 0 or saved_world_size < 1 or not _SEED_MIN <= seed <= _SEED_MAX:
            raise CheckpointError(
                f"invalid sampler state in checkpoint: epoch={epoch} index={index} "
                f"world_size={saved_world_size} seed={seed}"
            )
        if dataset_len != self.dataset_len:
            raise CheckpointError(
                f"checkpoint's sampler was over {dataset_len} samples, this one over "
                f"{self.dataset_len}; resume with the same dataset"
            )
        if saved_world_size != self.world_size:
            index = index * saved_world_size // self.world_size
            logger.warning(
                "resuming a sampler saved with world_size=%d on world_size=%d: position mapped "
                "to %d samples per rank; the run will not be bit-identical",
                saved_world_size,
                self.world_size,
                index,
            )
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = epoch
        self._index = min(index, self.num_samples)
        self._consumed = None
