"""Shared builders for the audit tests: hand-made Signals and a tiny dataset a small MLP can memorise."""

import numpy as np
import pytest
import torch

from samprivacy.audit.signals import Signals
from samprivacy.learn.data.base import Dataset, Splits


def signals_with(score: np.ndarray, labels: np.ndarray, num_classes: int) -> Signals:
    """Signals whose confidence is `score` and every other signal derived consistently (loss = -log conf)."""
    score = np.asarray(score, dtype=np.float64)
    probs = np.zeros((score.size, num_classes))
    probs[np.arange(score.size), labels] = score
    return Signals(labels=np.asarray(labels), probs=probs, loss=-np.log(np.clip(score, 1e-30, None)),
                   correct=score > 0.5, confidence=score, entropy=1 - score, modified_entropy=1 - score)


def random_label_dataset(n_per_split: int = 100, dim: int = 16, classes: int = 4, seed: int = 0,
                         feature_kind: str = "continuous") -> Dataset:
    """Features with no relation to the (random) labels: a model can only fit the members by memorising them."""
    g = np.random.default_rng(seed)
    n = 5 * n_per_split
    x = g.normal(0, 1, (n, dim))
    if feature_kind == "binary":
        x = (x > 0).astype(np.float64)
    idx = g.permutation(n).reshape(5, n_per_split)
    splits = Splits(known_members=idx[0], eval_members=idx[1], known_nonmembers=idx[2], eval_nonmembers=idx[3],
                    val=idx[4])
    return Dataset("random_labels", torch.tensor(x, dtype=torch.float32), torch.tensor(g.integers(0, classes, n)),
                   classes, feature_kind, splits)


def memorise(dataset: Dataset, steps: int = 300, seed: int = 0) -> torch.nn.Module:
    """A small MLP trained full-batch on the members until it fits their random labels."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(dataset.x.shape[1], 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, dataset.num_classes))
    idx = torch.as_tensor(dataset.splits.train)
    x, y = dataset.x[idx], dataset.y[idx]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


class ConstantModel(torch.nn.Module):
    """Ignores its input: the same logits for every example, so nothing about membership can leak."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.linspace(0, 1, num_classes))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


@pytest.fixture(scope="session")
def memorised():
    dataset = random_label_dataset()
    return dataset, memorise(dataset)
