"""A model population: K models of one configuration, each trained on a random subset of a member pool.

    plan = PopulationPlan.make(dataset, models=16, fraction=0.5, seed=0)   # who trains on what
    for k in range(plan.models): result = train(model_k, dataset, config_k(k), train_index=plan.train_index(k))
    stats = model_statistics(result.model, dataset, plan, queries)        # per-example arrays, not the model

The pool is given by the caller (pipeline.setup.population_pool: by default every example outside the test and
validation sets, the LiRA protocol; or the split's members, splits.train); every model is selected on splits.val and measured on the
held-out non-members splits.test, which no model trains on. `keep` (K, N) is balanced as in the LiRA reference
code: every pool example is IN for fraction * K models (a random set of them), so each example has the same
number of IN and OUT models (when fraction * K is not whole, floor or ceiling at random). The pool is also halved once into `known` and eval examples: attacks
fit thresholds on the known half and are scored on the other, as in a single trial.

Statistics per model and example (LiRA's, and what memorization needs): the logit-scaled confidence
log p_y - log sum_{j != y} p_j per query (for images: the image, then its mirror image, then shifts), correctness
and cross-entropy loss. Stored as arrays (float32), never the models.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from samprivacy.learn.augment import views
from samprivacy.learn.data.base import Dataset

STAT_FIELDS = ("conf", "prob", "correct", "loss", "test_conf", "test_prob", "test_correct", "test_loss")


def balanced_membership(models: int, n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """(models, n) bool: column i is True for fraction * models rows, a random set of them.

    When fraction * models is not a whole number, each column gets its floor or its ceiling, the ceiling with
    probability equal to the fractional part (so one model at fraction 0.5 trains on a random half)."""
    exact = fraction * models
    n_in = np.floor(exact).astype(int) + (rng.random(n) < exact - np.floor(exact))  # (n,)
    order = rng.random((models, n)).argsort(axis=0).argsort(axis=0)  # each column: a random rank per model
    return order < n_in[None, :]


@dataclass(frozen=True, eq=False)
class PopulationPlan:
    """Who trains on what. pool (N,), test (M,): dataset indices; keep (K, N) bool; known (N,) bool; seeds (K,)."""

    pool: np.ndarray
    test: np.ndarray
    keep: np.ndarray
    known: np.ndarray
    seeds: np.ndarray

    @classmethod
    def make(cls, dataset: Dataset, models: int, fraction: float = 0.5, seed: int = 0,
             pool: np.ndarray | None = None) -> "PopulationPlan":
        """pool: dataset indices the models draw their halves from (None: the split's members, splits.train)."""
        pool = np.sort(dataset.splits.train if pool is None else np.asarray(pool, dtype=np.int64))
        test = np.sort(dataset.splits.test)
        rng = np.random.default_rng([seed, 11])  # a stream of its own: the split used [seed, 1] and [seed, 2]
        keep = balanced_membership(models, len(pool), fraction, rng)
        known = np.zeros(len(pool), bool)
        known[rng.permutation(len(pool))[: len(pool) // 2]] = True
        seeds = np.random.SeedSequence([seed, 13]).generate_state(models, dtype=np.uint32).astype(np.int64) >> 1
        return cls(pool=pool, test=test, keep=keep, known=known, seeds=seeds)

    @property
    def models(self) -> int:
        return self.keep.shape[0]

    def train_index(self, k: int) -> np.ndarray:
        """Dataset rows model k trains on."""
        return self.pool[self.keep[k]]

    def fingerprint(self) -> str:
        """sha256 of every array: a saved model's statistics belong to this plan only if fingerprints match."""
        h = hashlib.sha256()
        for f in fields(self):
            a = np.ascontiguousarray(getattr(self, f.name))
            h.update(f.name.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
        return h.hexdigest()


@dataclass(frozen=True, eq=False)
class ModelStats:
    """One model's per-example statistics. conf (N, Q) / test_conf (M, Q): logit-scaled confidence per query;
    prob (N, Q) / test_prob (M, Q): probability of the true label at a softmax temperature (RMIA's signal);
    correct, loss (N,) / test_correct, test_loss (M,): of the plain query (the example as it is)."""

    conf: np.ndarray
    prob: np.ndarray
    correct: np.ndarray
    loss: np.ndarray
    test_conf: np.ndarray
    test_prob: np.ndarray
    test_correct: np.ndarray
    test_loss: np.ndarray


@dataclass(frozen=True, eq=False)
class PopulationStats:
    """Every model's statistics stacked: keep (K, N); conf, prob (K, N, Q); correct, loss (K, N); test_* (K, M, ...)."""

    keep: np.ndarray
    conf: np.ndarray
    prob: np.ndarray
    correct: np.ndarray
    loss: np.ndarray
    test_conf: np.ndarray
    test_prob: np.ndarray
    test_correct: np.ndarray
    test_loss: np.ndarray

    @classmethod
    def stack(cls, keep: np.ndarray, per_model: list[ModelStats]) -> "PopulationStats":
        if len(per_model) != keep.shape[0]:
            raise ValueError(f"{len(per_model)} models' statistics for a membership matrix of {keep.shape[0]} rows")
        return cls(keep=keep, **{f: np.stack([getattr(m, f) for m in per_model]) for f in STAT_FIELDS})

    def select(self, models: npt.ArrayLike) -> "PopulationStats":
        """The statistics of a subset of models (an index array or bool mask over K)."""
        return PopulationStats(**{f.name: getattr(self, f.name)[models] for f in fields(self)})

    @property
    def p_y(self) -> np.ndarray:
        """Probability of the true label (K, N) at the recorded temperature, averaged over queries."""
        return self.prob.astype(np.float64).mean(axis=-1)

    @property
    def test_p_y(self) -> np.ndarray:
        return self.test_prob.astype(np.float64).mean(axis=-1)


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p_y - log sum_{j != y} p_j of (..., C) logits, computed stably as z_y - logsumexp_{j != y} z_j."""
    z = logits.double()
    z_y = z.gather(-1, labels.expand(z.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    others = z.scatter(-1, labels.expand(z.shape[:-1]).unsqueeze(-1), float("-inf"))
    return z_y - torch.logsumexp(others, dim=-1)


def default_queries(feature_kind: str) -> int:
    """LiRA's augmented queries: the image and its mirror image for images; tabular rows are queried once."""
    return 2 if feature_kind == "image" else 1


@torch.no_grad()
def query(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, queries: int, image: bool,
          temperature: float = 1.0, batch_size: int = 1024) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    """{conf (n, Q), prob (n, Q), correct (n,), loss (n,)} and the plain query's logits (n, C) of `model`.

    The model runs in eval mode on its own device; inputs move there batch by batch.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    confs, probs, plain = [], [], []
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            batch = views(xb, queries) if image else xb.unsqueeze(0).expand(queries, *xb.shape)
            logits = model(batch.reshape(-1, *xb.shape[1:])).float().reshape(queries, len(xb), -1)
            confs.append(logit_confidence(logits, yb).T.cpu())
            scaled = torch.softmax(logits.double() / temperature, dim=-1)
            probs.append(scaled.gather(-1, yb.expand(queries, -1).unsqueeze(-1)).squeeze(-1).T.cpu())
            plain.append(logits[0].cpu())
    finally:
        model.train(was_training)
    logits = torch.cat(plain) if plain else torch.empty(0, 0)
    labels = y.cpu()
    loss = F.cross_entropy(logits.double(), labels, reduction="none") if len(labels) else torch.empty(0)
    stats = {"conf": torch.cat(confs).numpy().astype(np.float32) if confs else np.empty((0, queries), np.float32),
             "prob": torch.cat(probs).numpy() if probs else np.empty((0, queries)),
             "correct": (logits.argmax(1) == labels).numpy(), "loss": loss.numpy().astype(np.float32)}
    return stats, logits


def model_statistics(model: torch.nn.Module, dataset: Dataset, plan: PopulationPlan, queries: int,
                     temperature: float = 1.0, batch_size: int = 1024) -> tuple[ModelStats, torch.Tensor]:
    """The statistics of one trained model on the pool and the test set, and its plain logits on the pool.
    `prob` is kept in float64: near 1, the digits that tell members apart are beyond float32's."""
    image = dataset.feature_kind == "image"
    pool, test = torch.as_tensor(plan.pool), torch.as_tensor(plan.test)
    on_pool, pool_logits = query(model, dataset.x[pool], dataset.y[pool], queries, image, temperature, batch_size)
    on_test, _ = query(model, dataset.x[test], dataset.y[test], queries, image, temperature, batch_size)
    return ModelStats(**on_pool, **{f"test_{k}": v for k, v in on_test.items()}), pool_logits
