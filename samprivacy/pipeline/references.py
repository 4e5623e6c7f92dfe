"""Shared reference models: trained once per (dataset, split, model, training budget) and reused by every trial
of a sweep for RMIA and offline LiRA, so a strong attack costs a trial its own model(s), not a population.

What this assumes, and why it is a fair attacker: the attacker knows the data distribution (the member pool and
held-out population samples), the architecture and the training budget (epochs, batch size, learning rate and
schedule), but not the target's optimizer or its hyperparameters. So references are trained with plain SGD at
the trial's budget, each on its own random half of the pool (a balanced membership matrix of their own). RMIA
compares the target's likelihood ratio against population samples scored by the same references, which makes it
robust to such a mismatch (Zarifzadeh et al. 2024); offline LiRA is more sensitive to it. Where the target's own
training recipe is known, a population of the trial's configuration (shared_references: 0) is the stronger test.

The store is a folder (on a cluster: shared by every node): one sub-folder per reference recipe (its key), with
one file per finished reference model, written atomically, and a lock file so concurrent trials train each
recipe once (the others wait and read). An interrupted recipe continues from the models already saved.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from samprivacy.files import save_torch_atomic
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.population import PopulationPlan, PopulationStats, default_queries
from samprivacy.pipeline.members import ModelRecord, train_member
from samprivacy.spec import TrialConfig

# What a reference recipe keeps from the trial: the data, the model and the training budget; never the optimizer.
RECIPE_FIELDS = ("dataset", "data_root", "download", "model", "hidden", "base_optimizer", "lr", "momentum",
                 "weight_decay", "schedule", "epochs", "batch_size", "augment", "amp")
REFERENCE_SEED = 7919  # the references' own membership matrix and initial weights (not the trial's seed)


def reference_config(config: TrialConfig) -> TrialConfig:
    """A reference model's configuration: the trial's data and budget, plain SGD, no attacks."""
    keep = {k: getattr(config, k) for k in RECIPE_FIELDS}
    return TrialConfig(**keep, optimizer="sgd", seed=REFERENCE_SEED, split_seed=effective_split_seed(config),
                       device=config.device)


def effective_split_seed(config: TrialConfig) -> int:
    return config.seed if config.split_seed is None else config.split_seed


class ReferenceStore:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def key(self, config: TrialConfig, count: int, fraction: float, queries: int, temperature: float) -> str:
        recipe = reference_config(config).model_dump(mode="json", exclude={"device"})
        recipe |= {"count": count, "fraction": fraction, "queries": queries, "temperature": temperature}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]

    def get(self, config: TrialConfig, dataset: Dataset, count: int, fraction: float, queries: int | None = None,
            temperature: float = 1.0) -> PopulationStats:
        """The statistics of `count` reference models for this trial's recipe: read, or trained once."""
        queries = queries or default_queries(dataset.feature_kind)
        key = self.key(config, count, fraction, queries, temperature)
        folder = self.directory / key
        folder.mkdir(parents=True, exist_ok=True)
        ref_config = reference_config(config)
        plan = PopulationPlan.make(dataset, count, fraction, seed=REFERENCE_SEED)
        (folder / "recipe.json").write_text(json.dumps(ref_config.model_dump(mode="json"), indent=2))
        with _locked(folder / ".lock"):
            records = []
            for k in range(count):
                path = folder / f"model-{k:04d}.pt"
                if path.exists():
                    record = ModelRecord.from_state(torch.load(path, weights_only=True))
                else:
                    record = train_member(ref_config, dataset, plan, k, queries, temperature=temperature)
                    save_torch_atomic(record.to_state(keep_roc=False), path)
                records.append(record)
        return PopulationStats.stack(plan.keep, [r.stats for r in records])


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # concurrent trials wait here; the first one trains
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
