"""A single-model trial, start to finish, without Ray: load data -> build model -> train -> attack -> TrialResult.

The target model trains on the split's members; every attack fits on the attacker's known sets and is scored on
the balanced evaluation sets.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from samprivacy.audit import AttackMetrics, AttackReport, run_attacks
from samprivacy.audit.lowfpr import missing_reason
from samprivacy.catalog import LOW_FPRS
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.train import TrainResult, train
from samprivacy.pipeline.setup import prepare
from samprivacy.spec import TrialConfig


@dataclass
class TrialResult:
    config: TrialConfig
    dataset: Dataset
    training: TrainResult
    attacks: AttackReport
    seconds: float

    @property
    def attack_acc(self) -> float | None:
        """The paper's privacy number: the best attack's accuracy on the balanced evaluation sets, the attack
        chosen on one half of them and measured on the other (both ways, averaged: AttackReport.held_out_best);
        None when no attack kept its evaluation scores."""
        return self.attacks.held_out_best("accuracy", seed=self.config.seed)

    def summary(self) -> dict:
        """The JSON document of `samprivacy trial --json` and the metrics a sweep trial reports. A TPR at an FPR
        below 1 / (evaluation non-members) is None, and `missing` says why (audit.lowfpr)."""
        held_out = self.attacks.held_out_best
        negatives = len(self.dataset.splits.eval_nonmembers)
        missing = {f"attack_tpr_at_fpr_{f}": reason for f in LOW_FPRS
                   if (reason := missing_reason(f, negatives)) is not None}
        attacks = {name: {k: (None if f"attack_{k}" in missing else v) for k, v in m.items()}
                   for name, m in self.attacks.to_dict().items()}
        # The strongest attack by each measure, chosen on half the eval sets and measured on the other half (a
        # sweep may minimise any of them); best_attack: the best by accuracy on all of them.
        strongest = {f"attack_{key}": held_out(key, seed=self.config.seed)
                     for key in ("auc", "advantage", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01")}
        for f in LOW_FPRS:
            key = f"attack_tpr_at_fpr_{f}"
            if strongest[key] is None and key not in missing:
                missing[key] = (f"the attack is chosen on half of the {negatives} evaluation non-members and "
                                f"measured on the other half: {missing_reason(f, negatives // 2)}")
            strongest[key] = None if key in missing else strongest[key]
        return {
            "config": self.config.model_dump(mode="json"),
            "test_acc": self.training.test_acc,
            "train_acc": self.training.train_acc,
            "val_acc": self.training.val_acc,
            "attack_acc": self.attack_acc,
            "best_attack": self.attacks.best.name,
            **strongest,
            "eval_nonmembers": negatives,
            "missing": missing,
            "single_query_acc": held_out("accuracy", "single_query", seed=self.config.seed),
            "label_only_acc": held_out("accuracy", "label_only", seed=self.config.seed),
            "best_epoch": self.training.best_epoch,
            "method": self.config.method,
            **self.training.defense_metrics,  # dp: epsilon (what the accountant spent), delta, noise_multiplier
            "attacks": attacks,
            "history": self.training.history,
            "device": self.training.device,
            "seconds": self.seconds,
        }

    def save(self, directory: str | Path) -> Path:
        """Write summary.json, splits.npz, model.pt (state dict; load with weights_only=True), roc.npz, roc.png."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "summary.json").write_text(json.dumps(self.summary(), indent=2))
        self.dataset.splits.save(directory / "splits.npz")
        torch.save({k: v.cpu() for k, v in self.training.model.state_dict().items()}, directory / "model.pt")
        save_roc({name: r.metrics for name, r in self.attacks.results.items()}, directory)
        return directory


def save_roc(curves: Mapping[str, AttackMetrics], directory: Path, title: str = "membership inference ROC") -> None:
    """roc.npz (`<attack>_fpr`, `<attack>_tpr`) and roc.png for every attack's evaluation ROC."""
    np.savez(directory / "roc.npz", **{f"{name}_{axis}": getattr(m, axis) for name, m in curves.items()
                                       for axis in ("fpr", "tpr")})
    plot_roc(curves, directory / "roc.png", title)


def plot_roc(curves: Mapping[str, AttackMetrics], path: Path, title: str = "membership inference ROC") -> Path:
    """Every attack's ROC on log-log axes, where the low-FPR regime that matters for privacy is visible."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, safe in worker threads

    fig = Figure(figsize=(5.5, 5), layout="tight")
    ax = fig.subplots()
    for name, metrics in sorted(curves.items(), key=lambda kv: -kv[1].auc):
        ax.plot(np.maximum(metrics.fpr, 1e-5), np.maximum(metrics.tpr, 1e-5),
                label=f"{name} (AUC {metrics.auc:.3f})", linewidth=1)
    ax.plot([1e-5, 1], [1e-5, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1), xlabel="false positive rate",
           ylabel="true positive rate", title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110)
    return path


def run_single_trial(config: TrialConfig, *, on_epoch: Callable | None = None,
                     resume: dict | None = None) -> TrialResult:
    """Train with `config`, then attack the selected model. See `learn.train.train` for on_epoch/resume."""
    start = time.perf_counter()
    dataset, model = prepare(config)
    training = train(model, dataset, config, on_epoch=on_epoch, resume=resume)
    report = run_attacks(training.model, dataset, config.attack_names(), device=training.device, seed=config.seed)
    return TrialResult(config, dataset, training, report, time.perf_counter() - start)
