"""What every trial does first: check the cheap things, load the data, build the model."""

from __future__ import annotations

import numpy as np

import torch

from samprivacy.audit import validate_attack_names
from samprivacy.learn.data import load_dataset
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.models import build_model
from samprivacy.learn.train import resolve_device
from samprivacy.spec import TrialConfig


def load_data(config: TrialConfig) -> Dataset:
    """Validate everything cheap first (attack names, device), then load the dataset with its split."""
    if config.attacks is not None:
        validate_attack_names(config.attacks)
    resolve_device(config.device)
    split_seed = config.seed if config.split_seed is None else config.split_seed
    return load_dataset(config.dataset, root=config.data_root, seed=split_seed, download=config.download,
                        **(config.dataset_options or {}))


def population_pool(dataset: Dataset, which: str = "all") -> np.ndarray:
    """The dataset indices a population's models draw their halves from (population.pool).

    all: every example outside the held-out test set and the validation set (the LiRA protocol: each model's half
    comes from nearly the whole dataset, and each target has about half the pool as non-members); members: the
    split's training members (the paper's Table 1 protocol; for Purchase and Texas about 10% of the rows)."""
    if which == "members":
        return np.sort(dataset.splits.train)
    if which != "all":
        raise ValueError(f"population pool must be 'all' or 'members', got {which!r}")
    held_out = np.concatenate([dataset.splits.test, dataset.splits.val])
    return np.setdiff1d(np.arange(len(dataset.y)), held_out)


def new_model(config: TrialConfig, dataset: Dataset, seed: int) -> torch.nn.Module:
    """The trial's model with initial weights drawn from `seed`."""
    torch.manual_seed(seed)
    return build_model(config.model, dataset.input_shape, dataset.num_classes, hidden=config.hidden,
                       dataset=config.dataset)


def prepare(config: TrialConfig) -> tuple[Dataset, torch.nn.Module]:
    """The dataset and a freshly initialised model of a single-model trial."""
    dataset = load_data(config)
    return dataset, new_model(config, dataset, config.seed)
