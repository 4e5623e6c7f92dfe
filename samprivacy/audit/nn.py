"""NN attack (Shokri et al. 2017; Nasr et al. 2018): a small MLP on (probabilities, one-hot true label).

Trained on the attacker's known sets only (class-balanced loss), seeded, on CPU in about a second for a few
thousand examples; returns member probabilities for the evaluation sets with the decision threshold 0.5.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from samprivacy.audit.signals import LOG_FLOOR, Signals


def attack_features(signals: Signals, num_classes: int, sort_probs: bool = True) -> torch.Tensor:
    """(N, 2C + 1) float32: probabilities (sorted descending if sort_probs), one-hot label, scaled log p_y.

    log p_y is given explicitly because an MLP cannot cheaply multiply probs by the one-hot label, and
    members' p_y differ from non-members' in its last digits (0.9999 vs 0.99), where log-scale separates them.
    """
    probs = torch.as_tensor(signals.probs, dtype=torch.float32)
    if probs.shape[1] < num_classes:
        probs = nn.functional.pad(probs, (0, num_classes - probs.shape[1]))
    if sort_probs:
        probs = probs.sort(dim=1, descending=True).values
    one_hot = nn.functional.one_hot(torch.as_tensor(signals.labels), num_classes).float()
    log_p_y = torch.as_tensor(-signals.loss, dtype=torch.float32).clamp_min(float(np.log(LOG_FLOOR)))
    return torch.cat([probs, one_hot, (log_p_y / 10.0)[:, None]], dim=1)


def _mlp(in_features: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1))


def nn_attack(
    known: Signals,
    known_membership: np.ndarray,
    eval: Signals,
    *,
    seed: int = 0,
    epochs: int = 30,
    hidden: int = 64,
    batch_size: int = 256,
    lr: float = 1e-3,
    sort_probs: bool = True,
) -> tuple[np.ndarray, float]:
    """Train the attack MLP on the known sets; return eval member probabilities (N_eval,) and threshold 0.5.

    known_membership: (N_known,) bool. The global torch RNG state is left untouched (a forked RNG is seeded).
    """
    membership = torch.as_tensor(np.asarray(known_membership, dtype=bool))
    n_pos, n_neg = int(membership.sum()), int((~membership).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"NN attack needs known members and non-members, got {n_pos} and {n_neg}")
    num_classes = max(known.num_classes, eval.num_classes)
    x_known = attack_features(known, num_classes, sort_probs)
    x_eval = attack_features(eval, num_classes, sort_probs)
    target = membership.float()
    # Class-balanced loss: each side of the known sets carries half the weight, whatever their sizes.
    weight = torch.where(membership, 0.5 / n_pos, 0.5 / n_neg) * len(membership)
    threads = torch.get_num_threads()
    # A 64-unit MLP trains about 3x faster on one thread than on two; the setting is restored afterwards.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _train(x_known, target, weight, hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr)
            with torch.no_grad():
                scores = torch.sigmoid(model(x_eval).squeeze(1)).double().numpy()
    finally:
        torch.set_num_threads(threads)
    return scores, 0.5


def _train(x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, *, hidden: int, epochs: int,
           batch_size: int, lr: float) -> nn.Module:
    """Minibatch Adam on the weighted binary cross-entropy; x (N, F), target and weight (N,)."""
    model = _mlp(x.shape[1], hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = (loss_fn(model(x[idx]).squeeze(1), target[idx]) * weight[idx]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()
