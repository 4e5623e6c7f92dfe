"""A trial that trains nothing: a stand-in for `pipeline.run_trial` that measures the service itself (tests of
the bookkeeping between Tune, Optuna and MLflow; benchmarks/bench_overhead.py).

`runner.run(spec, work=TRIVIAL)`: no torch, no data; objectives are a deterministic function of the
configuration. It walks its epochs, calling on_epoch (so checkpoints and curves happen as in a real trial) and
sleeping `SAMPRIVACY_TRIVIAL_EPOCH_S` seconds per epoch (default 0)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from samprivacy.spec import TrialConfig

TRIVIAL = "tests.support.trivial:run_trial"


def objectives(config: TrialConfig) -> dict[str, float]:
    """test_acc and attack_acc in [0.5, 1), a function of everything but nothing random."""
    digest = hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).digest()
    return {"test_acc": 0.5 + digest[0] / 512, "attack_acc": 0.5 + digest[1] / 512}


class TrivialResult:
    def __init__(self, config: TrialConfig, seconds: float) -> None:
        self.config, self.seconds = config, seconds

    def summary(self) -> dict:
        values = objectives(self.config)
        return {"config": self.config.model_dump(mode="json"), **values, "train_acc": 0.9, "val_acc": 0.8,
                "attack_auc": values["attack_acc"], "attack_advantage": 0.0, "attack_tpr_at_fpr_0.001": 0.0,
                "attack_tpr_at_fpr_0.01": 0.0, "single_query_acc": values["attack_acc"], "label_only_acc": None,
                "best_attack": "loss", "best_epoch": self.config.epochs,
                "attacks": {"loss": {"accuracy": values["attack_acc"], "auc": values["attack_acc"]}},
                "history": [], "device": "cpu", "seconds": self.seconds}

    def save(self, directory: str | Path) -> Path:
        Path(directory, "summary.json").write_text(json.dumps(self.summary()))
        return Path(directory)


def run_trial(config: TrialConfig, *, on_epoch: Callable | None = None, resume: dict | None = None,
              references: object = None) -> "TrivialResult":
    start = time.perf_counter()
    if os.environ.get("SAMPRIVACY_TRIVIAL_STARTS"):  # benchmarks: when each trial began (one line each, appended)
        with open(os.environ["SAMPRIVACY_TRIVIAL_STARTS"], "a") as starts:
            starts.write(f"{time.time()}\n")
    pause = float(os.environ.get("SAMPRIVACY_TRIVIAL_EPOCH_S", "0"))
    first = resume["epoch"] + 1 if resume else 1
    for epoch in range(first, config.epochs + 1):
        time.sleep(pause)
        if on_epoch is not None:
            on_epoch({"epoch": epoch, "train_loss": 1.0 / epoch, "val_acc": 0.5 + epoch / 1000, "seconds": pause},
                     lambda epoch=epoch: {"epoch": epoch})
    return TrivialResult(config, time.perf_counter() - start)
