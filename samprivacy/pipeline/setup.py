"""What every trial does first: check the cheap things, load the data, build the model."""

from __future__ import annotations

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


def new_model(config: TrialConfig, dataset: Dataset, seed: int) -> torch.nn.Module:
    """The trial's model with initial weights drawn from `seed`."""
    torch.manual_seed(seed)
    return build_model(config.model, dataset.input_shape, dataset.num_classes, hidden=config.hidden,
                       dataset=config.dataset)


def prepare(config: TrialConfig) -> tuple[Dataset, torch.nn.Module]:
    """The dataset and a freshly initialised model of a single-model trial."""
    dataset = load_data(config)
    return dataset, new_model(config, dataset, config.seed)
