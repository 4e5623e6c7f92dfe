"""One trial, start to finish, without Ray: load data -> build model -> train -> attack -> TrialResult.

This is the unit of work the sweep service schedules; `samprivacy trial` runs it directly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from samprivacy.audit import AttackReport, run_attacks, validate_attack_names
from samprivacy.learn.data import load_dataset
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.models import build_model
from samprivacy.learn.train import TrainConfig, TrainResult, resolve_device, train
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
        np.savez(directory / "roc.npz", **{
            f"{name}_{axis}": getattr(r.metrics, axis) for name, r in self.attacks.results.items()
            for axis in ("fpr", "tpr")})
        plot_roc(self.attacks, directory / "roc.png")
        return directory


def plot_roc(report: AttackReport, path: Path) -> Path:
    """Every attack's ROC on log-log axes, where the low-FPR regime that matters for privacy is visible."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, safe in worker threads

    fig = Figure(figsize=(5.5, 5), layout="tight")
    ax = fig.subplots()
    for name, result in sorted(report.results.items(), key=lambda kv: -kv[1].metrics.auc):
        ax.plot(np.maximum(result.metrics.fpr, 1e-5), np.maximum(result.metrics.tpr, 1e-5),
                label=f"{name} (AUC {result.metrics.auc:.3f})", linewidth=1)
    ax.plot([1e-5, 1], [1e-5, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1), xlabel="false positive rate",
           ylabel="true positive rate", title="membership inference ROC")
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110)
    return path


def train_config(config: TrialConfig) -> TrainConfig:
    """The training part of a trial's configuration."""
    return TrainConfig(
        optimizer=config.optimizer, base_optimizer=config.base_optimizer, rho=config.rho, lam=config.lam,
        xi=config.xi, swa_start=config.swa_start, swa_lr=config.swa_lr, lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay, schedule=config.schedule, epochs=config.epochs,
        batch_size=config.batch_size, seed=config.seed, augment=config.augment, amp=config.amp,
        device=config.device)


def prepare(config: TrialConfig) -> tuple[Dataset, torch.nn.Module]:
    """Validate everything cheap first (attack names, device), then load the data and build the model."""
    if config.attacks is not None:
        validate_attack_names(config.attacks)
    resolve_device(config.device)
    split_seed = config.seed if config.split_seed is None else config.split_seed
    dataset = load_dataset(config.dataset, root=config.data_root, seed=split_seed, download=config.download)
    torch.manual_seed(config.seed)
    model = build_model(config.model, dataset.input_shape, dataset.num_classes, hidden=config.hidden,
                        dataset=config.dataset)
    return dataset, model


def run_trial(config: TrialConfig, *, on_epoch: Callable | None = None, resume: dict | None = None) -> TrialResult:
    """Train with `config`, then attack the selected model. See `learn.train.train` for on_epoch/resume."""
    start = time.perf_counter()
    dataset, model = prepare(config)
    training = train(model, dataset, train_config(config), on_epoch=on_epoch, resume=resume)
    report = run_attacks(training.model, dataset, config.attacks, device=training.device, seed=config.seed)
    return TrialResult(config, dataset, training, report, time.perf_counter() - start)
