"""Membership-inference audit: signals -> attacks -> metrics. Pure torch/numpy (no Ray, Optuna, MLflow, pydantic)."""

from samprivacy.audit.label_only import image_augmentations, label_only_scores, perturb
from samprivacy.audit.metrics import (
    AttackMetrics,
    attack_metrics,
    auc,
    best_threshold,
    fit_group_thresholds,
    roc_curve,
    tpr_at_fpr,
)
from samprivacy.audit.nn import nn_attack
from samprivacy.audit.signals import Signals, model_logits
from samprivacy.audit.suite import (
    ATTACKS,
    AttackContext,
    AttackReport,
    AttackResult,
    AttackSpec,
    run_attack,
    run_attacks,
    validate_attack_names,
)
from samprivacy.audit.threshold import (
    METRIC_SCORES,
    classwise_threshold_attack,
    classwise_thresholds,
    global_threshold_attack,
    metric_score,
)

__all__ = [
    "ATTACKS",
    "METRIC_SCORES",
    "AttackContext",
    "AttackMetrics",
    "AttackReport",
    "AttackResult",
    "AttackSpec",
    "Signals",
    "attack_metrics",
    "auc",
    "best_threshold",
    "classwise_threshold_attack",
    "classwise_thresholds",
    "fit_group_thresholds",
    "global_threshold_attack",
    "image_augmentations",
    "label_only_scores",
    "metric_score",
    "model_logits",
    "nn_attack",
    "perturb",
    "roc_curve",
    "run_attack",
    "run_attacks",
    "tpr_at_fpr",
    "validate_attack_names",
]
