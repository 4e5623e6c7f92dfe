"""The types of a data source: `Splits` (who is a member), `DatasetArrays` (what a source reads and checks, as
numpy arrays) and `Dataset` (the same as tensors, what training uses).

A source reads into `DatasetArrays` without importing torch, so the sweep's driver can check every data file
before anything starts at the price of reading it (importing torch alone takes seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

FeatureKind = Literal["binary", "continuous", "image"]
SPLIT_NAMES = ("known_members", "eval_members", "known_nonmembers", "eval_nonmembers", "val")


@dataclass(frozen=True)
class Splits:
    """Disjoint index arrays into a dataset (docs/architecture.md and docs/decisions.md, "Data and splits").

    train = known_members ∪ eval_members ∪ extra_members (the target model trains on these); the attacker fits on
    known_members vs known_nonmembers and is scored on eval_members vs eval_nonmembers (balanced);
    val selects the model and is never an evaluation set.
    extra_members: trained on but in no attack set; empty unless the member pool outgrows the non-member pool
    (CIFAR: 50,000 training images against 5,000 evaluation non-members) and the sets must stay balanced.
    """

    known_members: np.ndarray
    eval_members: np.ndarray
    known_nonmembers: np.ndarray
    eval_nonmembers: np.ndarray
    val: np.ndarray
    extra_members: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def train(self) -> np.ndarray:
        return np.concatenate([self.known_members, self.eval_members, self.extra_members])

    @property
    def test(self) -> np.ndarray:
        """Held-out non-members (never trained on, never used for selection): where test accuracy is measured."""
        return np.concatenate([self.known_nonmembers, self.eval_nonmembers])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, extra_members=self.extra_members, **{name: getattr(self, name) for name in SPLIT_NAMES})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Splits":
        with np.load(path) as f:
            names = SPLIT_NAMES + (("extra_members",) if "extra_members" in f.files else ())
            return cls(**{name: f[name].astype(np.int64) for name in names})


@dataclass(frozen=True)
class Dataset:
    """A whole dataset in memory plus its member/non-member partition.

    x: float32 tensor, (N, D) for tabular data or (N, C, H, W) normalised images.
    y: int64 tensor (N,), labels in [0, num_classes).
    feature_kind: how label-only attacks perturb queries ("binary" flips, "continuous" noise, "image" shifts/flips).
    info: provenance and extras, e.g. {"source": path, "subpopulation": ndarray, "singletons": ndarray}.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    feature_kind: FeatureKind
    splits: Splits
    info: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        idx = torch.as_tensor(getattr(self.splits, split), dtype=torch.long)
        return self.x[idx], self.y[idx]


@dataclass(frozen=True)
class DatasetArrays:
    """A dataset as a source reads it: `Dataset`'s fields with x and y as numpy arrays (x float32, y int64)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    feature_kind: FeatureKind
    splits: Splits
    info: dict = field(default_factory=dict)

    def tensors(self) -> Dataset:
        """The same dataset as tensors sharing the arrays' memory (no copy)."""
        import torch

        return Dataset(name=self.name, x=torch.from_numpy(self.x), y=torch.from_numpy(self.y),
                       num_classes=self.num_classes, feature_kind=self.feature_kind, splits=self.splits,
                       info=self.info)
