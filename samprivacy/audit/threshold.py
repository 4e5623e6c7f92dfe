"""Single-query metric attacks (Song & Mittal 2021): one signal per example, compared with a fitted threshold.

Each attack is a pure function (known signals, known membership, eval signals) -> (eval scores (N_eval,), threshold):
the threshold is fitted on the KNOWN sets only, and the caller scores the eval sets with metrics.attack_metrics.
Class-wise attacks fit one threshold per true label and return margins `score - threshold[label]` with threshold 0,
so that AUC and TPR@FPR rank examples across classes on one scale.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from samprivacy.audit.metrics import best_threshold, fit_group_thresholds
from samprivacy.audit.signals import Signals

# Membership score per signal; higher = more likely member (members have low loss, entropy and Mentr).
METRIC_SCORES: dict[str, Callable[[Signals], np.ndarray]] = {
    "correctness": lambda s: s.correct.astype(np.float64),
    "confidence": lambda s: s.confidence,
    "entropy": lambda s: -s.entropy,
    "modified_entropy": lambda s: -s.modified_entropy,
    "loss": lambda s: -s.loss,
}


def metric_score(metric: str, signals: Signals) -> np.ndarray:
    """Membership score (N,) of one metric; raises ValueError naming the metric if unknown."""
    if metric not in METRIC_SCORES:
        raise ValueError(f"unknown metric {metric!r}; choose from: {', '.join(METRIC_SCORES)}")
    return METRIC_SCORES[metric](signals)


def global_threshold_attack(
    metric: str, known: Signals, known_membership: np.ndarray, eval: Signals
) -> tuple[np.ndarray, float]:
    """One threshold for all classes, fitted for balanced accuracy on the known sets.

    known: N_known signals, known_membership: (N_known,) bool; eval: N_eval signals.
    Returns eval scores (N_eval,) and the fitted threshold (member iff score >= threshold).
    """
    return metric_score(metric, eval), best_threshold(metric_score(metric, known), known_membership)


def classwise_thresholds(
    scores: np.ndarray, membership: np.ndarray, labels: np.ndarray, num_classes: int
) -> np.ndarray:
    """(num_classes,) thresholds, one per true label, fitted on the known sets in one vectorised pass.

    A class without both members and non-members in the known sets gets the global threshold.
    """
    per_class, fitted = fit_group_thresholds(scores, membership, labels, num_classes)
    return np.where(fitted, per_class, best_threshold(scores, membership))


def classwise_threshold_attack(
    metric: str, known: Signals, known_membership: np.ndarray, eval: Signals
) -> tuple[np.ndarray, float]:
    """Song & Mittal's class-dependent thresholds: eval margins (N_eval,) = score - threshold[label], threshold 0."""
    num_classes = max(known.num_classes, eval.num_classes)
    thresholds = classwise_thresholds(metric_score(metric, known), known_membership, known.labels, num_classes)
    return metric_score(metric, eval) - thresholds[eval.labels], 0.0
