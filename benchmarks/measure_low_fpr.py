"""The figures of docs/attacks.md and the README's strong-attack section, measured as a user would get them.

    OMP_NUM_THREADS=1 python benchmarks/measure_low_fpr.py purchase  # docs/attacks.md: 20,000-row Purchase file
    OMP_NUM_THREADS=1 python benchmarks/measure_low_fpr.py quickstart  # README: SGD / SAM / SharpReg, 16 models

Prints, per attack, the TPR at 0.1% FPR pooled over targets with its 95% interval and the non-members behind it,
and the mean over targets beside it (a missing figure prints as "missing"). Not a test: it takes minutes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from samprivacy import catalog
from samprivacy.learn.data import load_dataset
from samprivacy.pipeline import run_trial
from samprivacy.spec import Population, TrialConfig

THRESHOLD_ATTACKS = tuple(n for n, e in catalog.ATTACKS.items() if e.family in ("threshold", "classwise"))


def fmt(value) -> str:
    return "missing" if value is None else f"{value:.3f}"


def rows(summary: dict, label: str) -> None:
    m = "tpr_at_fpr_0.001"
    sq = {n: summary["attacks"][n][m] for n in THRESHOLD_ATTACKS if n in summary["attacks"]}
    finite = [v for v in sq.values() if v is not None]
    print(f"{label}: test acc {summary['test_acc']:.3f}, pool {summary['population']['pool']:,}, "
          f"eval non-members per target {summary['low_fpr'][next(iter(sq))][m]['negatives']:,}")
    print(f"  best threshold attack (mean over targets, eval half): {fmt(max(finite) if finite else None)}")
    for attack in catalog.POPULATION_ATTACKS:
        key = f"{attack}_{m}"
        if key in summary:
            interval = "" if summary[key] is None else f" [{summary[key + '_ci_low']:.3f}, {summary[key + '_ci_high']:.3f}]"
            print(f"  {attack}: pooled {fmt(summary[key])}{interval} on {summary[key + '_negatives']:,} non-members; "
                  f"per target {fmt(summary[key + '_per_target'])} on {summary[key + '_per_target_negatives']:,}; "
                  f"AUC {summary[attack + '_auc']:.3f}")


def purchase() -> None:
    data = load_dataset("longtail", seed=0, n=20_000, classes=100, dim=600, subpopulations=20, zipf=1.2,
                        binary=True, density=0.2, spread=0.3, flip=0.15)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "purchase100.npz"
        np.savez(path, features=data.x.numpy().astype(np.uint8), labels=data.y.numpy())
        for pool in ("members", "all"):
            config = TrialConfig(dataset="purchase100", data_root=str(path), hidden=(256, 128), epochs=20,
                                 batch_size=64, lr=0.05, device="cpu", attacks=(*THRESHOLD_ATTACKS, "lira", "rmia"),
                                 population=Population(models=16, pool=pool, rmia={"reference_models": 2}))
            rows(run_trial(config).summary(), f"pool: {pool}")


def quickstart() -> None:
    options = {"binary": True, "n": 6000, "classes": 20, "dim": 200, "subpopulations": 20, "zipf": 1.2}
    budget = dict(epochs=30, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine")
    for label, optimizer in (("SGD", {"optimizer": "sgd"}), ("SAM rho 0.2", {"optimizer": "sam", "rho": 0.2}),
                             ("SharpReg xi 0.5", {"optimizer": "sharpreg", "rho": 0.01, "lam": 1.5, "xi": 0.5})):
        config = TrialConfig(dataset="longtail", dataset_options=options, device="cpu", **budget, **optimizer,
                             attacks=(*THRESHOLD_ATTACKS, "lira", "rmia"), population=Population(models=16))
        rows(run_trial(config).summary(), label)


if __name__ == "__main__":
    {"purchase": purchase, "quickstart": quickstart}[sys.argv[1] if len(sys.argv) > 1 else "quickstart"]()
