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
    def attack_acc(self) -> float:
        """The paper's privacy number: the best attack's accuracy on the balanced evaluation sets."""
        return self.attacks.best.metrics.accuracy

    def summary(self) -> dict:
        """The JSON document of `samprivacy trial --json` and the metrics a sweep trial reports."""
        best_sq, best_lo = self.attacks.best_single_query, self.attacks.best_label_only
        return {
            "config": self.config.model_dump(mode="json"),
            "test_acc": self.training.test_acc,
            "train_acc": self.training.train_acc,
            "val_acc": self.training.val_acc,
            "attack_acc": self.attack_acc,
            "best_attack": self.attacks.best.name,
            # Threshold-free objectives: the strongest attack by each measure (a sweep may minimise any of them).
            **{f"attack_{key}": max(m[key] for m in self.attacks.to_dict().values())
               for key in ("auc", "advantage", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01")},
            "single_query_acc": best_sq.metrics.accuracy if best_sq else None,
            "label_only_acc": best_lo.metrics.accuracy if best_lo else None,
            "best_epoch": self.training.best_epoch,
            "method": self.config.method,
            **self.training.defense_metrics,  # dp: epsilon (what the accountant spent), delta, noise_multiplier
            "attacks": self.attacks.to_dict(),
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
