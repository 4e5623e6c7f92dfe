import numpy as np
import pytest
import torch

from samprivacy.learn.data.base import Dataset
from samprivacy.learn.data.splits import make_splits
from samprivacy.learn.models import build_model
from samprivacy.spec import TrialConfig

from ..conftest import make_blobs


def config(**kw):
    """A small CPU training configuration."""
    return TrialConfig(**{"epochs": 4, "batch_size": 16, "lr": 0.1, "device": "cpu", **kw})


def mlp(dataset, hidden=(16,), seed=0):
    torch.manual_seed(seed)
    return build_model("mlp", dataset.input_shape, dataset.num_classes, hidden=hidden)


def noisy_labels(n_per_split: int = 60, dim: int = 20, classes: int = 4, seed: int = 0) -> Dataset:
    """Labels unrelated to the features: a model can only memorise its members (a large member/non-member gap)."""
    g = np.random.default_rng(seed)
    n = 5 * n_per_split
    x = g.standard_normal((n, dim))
    y = g.integers(0, classes, n)
    order = g.permutation(n)
    splits = make_splits(order[: 2 * n_per_split], order[2 * n_per_split:], n_known=n_per_split,
                         n_eval=n_per_split, seed=seed)
    return Dataset("noise", torch.tensor(x, dtype=torch.float32), torch.tensor(y), classes, "continuous", splits)


@pytest.fixture
def blobs():
    return make_blobs()
