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
recipe once (the others wait and read). The missing references of a recipe train as one stacked model where the
architecture allows it (FC and MLP: pipeline.members.stack_models), otherwise one at a time; an interrupted recipe
continues from the models already saved.

The key covers everything that shapes a reference: the dataset and its options, the model and the training
budget, the count, fraction, queries and temperature, and a fingerprint of the plan (the pool, the test set and
the references' membership, which follow from the data and the split) and of the data itself. Every model file
carries that fingerprint; a file whose fingerprint differs (another plan, other data, a tampered or foreign file)
is refused with a message, never loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from samprivacy.errors import ConfigError
from samprivacy.files import save_torch_atomic
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.population import PopulationPlan, PopulationStats, default_queries
from samprivacy.pipeline.members import ModelRecord, stack_models, stacks_of, train_member, train_members_stacked
from samprivacy.spec import TrialConfig

# What a reference recipe keeps from the trial: the data, the model and the training budget; never the optimizer.
RECIPE_FIELDS = ("dataset", "data_root", "download", "dataset_options", "model", "hidden", "base_optimizer", "lr",
                 "momentum", "weight_decay", "schedule", "epochs", "batch_size", "augment", "amp")
REFERENCE_SEED = 7919  # the references' own membership matrix and initial weights (not the trial's seed)


def reference_config(config: TrialConfig) -> TrialConfig:
    """A reference model's configuration: the trial's data and budget, plain SGD, no attacks."""
    keep = {k: getattr(config, k) for k in RECIPE_FIELDS}
    return TrialConfig(**keep, optimizer="sgd", seed=REFERENCE_SEED, split_seed=effective_split_seed(config),
                       device=config.device)


def effective_split_seed(config: TrialConfig) -> int:
    return config.seed if config.split_seed is None else config.split_seed


def data_fingerprint(dataset: Dataset) -> str:
    """sha256 of the labels and of every row of the features (a sample of rows for large data): other data under
    the same name and options (a regenerated or edited file) gives another fingerprint."""
    h = hashlib.sha256()
    step = max(1, len(dataset.y) // 4096)
    for a in (dataset.y.numpy(), dataset.x[::step].numpy()):
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


class ReferenceStore:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def key(self, config: TrialConfig, count: int, fraction: float, queries: int, temperature: float,
            fingerprint: str = "") -> str:
        recipe = reference_config(config).model_dump(mode="json", exclude={"device"})
        recipe |= {"count": count, "fraction": fraction, "queries": queries, "temperature": temperature,
                   "fingerprint": fingerprint}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]

    def get(self, config: TrialConfig, dataset: Dataset, count: int, fraction: float, queries: int | None = None,
            temperature: float = 1.0, pool: np.ndarray | None = None) -> PopulationStats:
        """The statistics of `count` reference models for this trial's recipe on `pool` (default: the split's
        members): read, or trained once. ConfigError for a stored model of another plan or other data."""
        queries = queries or default_queries(dataset.feature_kind)
        plan = PopulationPlan.make(dataset, count, fraction, seed=REFERENCE_SEED, pool=pool)
        fingerprint = hashlib.sha256((plan.fingerprint() + data_fingerprint(dataset)).encode()).hexdigest()
        key = self.key(config, count, fraction, queries, temperature, fingerprint)
        folder = self.directory / key
        folder.mkdir(parents=True, exist_ok=True)
        ref_config = reference_config(config)
        (folder / "recipe.json").write_text(json.dumps({**ref_config.model_dump(mode="json"),
                                                        "fingerprint": fingerprint}, indent=2))
        with _locked(folder / ".lock"):
            paths = [folder / f"model-{k:04d}.pt" for k in range(count)]
            missing = [k for k, path in enumerate(paths) if not path.exists()]
            if len(missing) > 1 and (size := stack_models(ref_config, dataset)) > 1:
                for members in stacks_of(missing, size):  # each stack's files are saved as it ends
                    trained = train_members_stacked(ref_config, dataset, plan, members, queries,
                                                    temperature=temperature)
                    for k, record in trained.items():
                        save_torch_atomic({**record.to_state(keep_roc=False), "fingerprint": fingerprint}, paths[k])
            records = []
            for k, path in enumerate(paths):
                if path.exists():
                    record = _load_checked(path, fingerprint, plan)
                else:
                    record = train_member(ref_config, dataset, plan, k, queries, temperature=temperature)
                    save_torch_atomic({**record.to_state(keep_roc=False), "fingerprint": fingerprint}, path)
                records.append(record)
        return PopulationStats.stack(plan.keep, [r.stats for r in records])


def _load_checked(path: Path, fingerprint: str, plan: PopulationPlan) -> ModelRecord:
    """A stored reference model, only if it was trained on this plan and these data."""
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch raises several kinds
        raise ConfigError(f"reference model {path} cannot be read ({e}); delete it (it is retrained)") from None
    stored = state.get("fingerprint") if isinstance(state, dict) else None
    if stored != fingerprint:
        raise ConfigError(f"reference model {path} was trained for another plan or other data (its fingerprint "
                          f"{str(stored)[:16]!r} is not this recipe's {fingerprint[:16]!r}); refusing to load it: "
                          f"delete {path.parent} or pass another references folder")
    record = ModelRecord.from_state(state)
    if record.stats.conf.shape[0] != len(plan.pool) or record.stats.test_conf.shape[0] != len(plan.test):
        raise ConfigError(f"reference model {path} holds statistics of {record.stats.conf.shape[0]} pool and "
                          f"{record.stats.test_conf.shape[0]} test examples, but this plan has {len(plan.pool)} "
                          f"and {len(plan.test)}; delete {path.parent}")
    return record


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # concurrent trials wait here; the first one trains
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
