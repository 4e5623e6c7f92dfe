"""SELENA (Tang et al. 2022): Split-AI, then self-distillation; the distilled model is what every attack audits.

Split-AI: K sub-models; each training example is left out of L of them, chosen at random (so it trains K - L),
and a query on a training example is answered by the average softmax of exactly the L sub-models that never
trained on it. Self-distillation: one model of the same architecture trains on the whole training set against
Split-AI's answers (soft labels, soft cross-entropy) and never sees a hard label, so no example's answer comes
from a model that memorised it.

Only training examples are ever asked here (distillation needs nothing else); Split-AI's rule for other queries
(L sub-models picked by the query's hash) matters only when Split-AI itself is deployed, which it is not.
Cost: K + 1 trainings of config.epochs each, the sub-models on (K - L) / K of the data.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from samprivacy.errors import ConfigError
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.defenses import option, replace


def check(k: int, l: int) -> None:
    if k < 2 or l < 1 or l >= k:
        raise ConfigError(f"SELENA needs 1 <= `selena_l` < `selena_k` (each example left out of L of K "
                          f"sub-models, trained by the other K - L), got K = {k}, L = {l}; e.g. K = 25, L = 10")


def split_assignment(n: int, k: int, l: int, seed: int) -> np.ndarray:
    """(n, K) bool: trained[i, j] is True when sub-model j trains on example i; each row has L Falses, a random
    set of them (Tang et al.: every example is a non-member of exactly L sub-models)."""
    check(k, l)
    rng = np.random.default_rng([seed, 17])
    left_out = rng.random((n, k)).argsort(axis=1)[:, :l]
    trained = np.ones((n, k), bool)
    np.put_along_axis(trained, left_out, False, axis=1)
    return trained


@torch.no_grad()
def split_ai(submodels: list[nn.Module], x: torch.Tensor, trained: np.ndarray, batch_size: int = 1024) -> torch.Tensor:
    """(n, C) Split-AI's answers on training examples x: for row i the mean softmax of the sub-models j with
    trained[i, j] False only (a sub-model that trained on i contributes exactly nothing)."""
    answering = torch.as_tensor(~trained, dtype=torch.float32, device=x.device)  # (n, K)
    total = torch.zeros(())
    for j, sub in enumerate(submodels):
        sub.eval()
        probs = torch.cat([torch.softmax(sub(x[i:i + batch_size]).float(), 1) for i in range(0, len(x), batch_size)])
        total = total + probs * answering[:, j:j + 1]
    return total / answering.sum(1, keepdim=True)


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture with new initial weights drawn from `seed`."""
    sub = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in sub.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
    return sub


def train_selena(train: Callable[..., Any], model: nn.Module, dataset: Dataset, config: Any, *,
                 train_index: np.ndarray | None, on_epoch: Callable[[dict, Callable[[], dict]], None] | None = None,
                 resume: dict | None = None) -> Any:
    """SELENA with the training loop `train` (learn.train.train): K sub-models, Split-AI's soft labels, and the
    distilled `model`. A checkpoint carries the soft labels, so a resumed trial distils on without the K again."""
    index = np.asarray(dataset.splits.train if train_index is None else train_index)
    k, l = option(config, "selena_k"), option(config, "selena_l")
    trained = split_assignment(len(index), k, l, config.seed)
    plain = replace(config, defense=None, selena_k=None, selena_l=None)
    if resume is not None:
        soft = resume["soft_labels"]
        resume = resume["train"]
    else:
        submodels = []
        for j in range(k):
            seed = config.seed * 1009 + j + 1
            sub_result = train(fresh_copy(model, seed), dataset, replace(plain, seed=seed),
                               train_index=index[trained[:, j]])
            submodels.append(sub_result.model)
        x = dataset.x[torch.as_tensor(index)].to(next(submodels[0].parameters()).device)
        soft = split_ai(submodels, x, trained).cpu()

    def hook(row: dict, checkpoint: Callable[[], dict]) -> None:
        if on_epoch is not None:
            on_epoch(row, lambda: {"soft_labels": soft.clone(), "train": checkpoint()})

    result = train(model, dataset, plain, train_index=index, soft_targets=soft, on_epoch=hook, resume=resume)
    result.defense_metrics = {"trainings": float(k + 1)}
    return result
