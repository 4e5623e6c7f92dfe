"""A finished sweep's MLflow record written directly (no Ray, no training): trial runs with known metrics."""

from __future__ import annotations

from samprivacy.spec import parse_spec
from samprivacy.sweep.tracking import Tracker
from samprivacy.tags import TAG_TRIAL

SPEC = {
    "name": "fake", "datasets": ["digits"], "seeds": [0, 1],
    "optimizers": {"sgd": {}, "sam": {"rho": {"choices": [0.05, 0.1]}}, "sharpreg": {"rho": 0.01, "lam": 1.5,
                                                                                        "xi": 0.3}},
    "train": {"epochs": 2, "lr": 0.1}, "objectives": {"test_acc": "max", "attack_acc": "min"},
    "sampler": {"name": "grid"},
}
# (optimizer, rho, seed) -> (test_acc, attack_acc, single_query_acc, label_only_acc)
RESULTS = {
    ("sgd", None, 0): (0.80, 0.60, 0.60, 0.55), ("sgd", None, 1): (0.82, 0.62, 0.62, 0.57),
    ("sam", 0.05, 0): (0.84, 0.66, 0.66, 0.58), ("sam", 0.05, 1): (0.86, 0.64, 0.64, 0.60),
    ("sam", 0.1, 0): (0.83, 0.70, 0.70, 0.59),
    ("sharpreg", 0.01, 0): (0.78, 0.54, 0.54, 0.52), ("sharpreg", 0.01, 1): (0.76, 0.56, 0.56, 0.50),
}


def fill(uri: str, workdir) -> tuple[Tracker, str]:
    """Write the fake sweep's runs to the MLflow store at `uri`; returns the tracker and the summary run id."""
    tracker = Tracker(uri, "fake", artifact_location=(workdir / "mlartifacts").as_uri())
    summary = tracker.parent_run()
    for number, ((optimizer, rho, seed), values) in enumerate(RESULTS.items()):
        params = {"dataset": "digits", "optimizer": optimizer, "seed": seed, "lr": 0.1, "epochs": 2,
                  "optuna_trial": number}
        if rho is not None:
            params["rho"] = rho
        if optimizer == "sharpreg":
            params |= {"lam": 1.5, "xi": 0.3}
        run = tracker.child_run(f"t{number:03d}", summary, params, run_name=f"{optimizer}-t{number:03d}")
        tracker.log_metrics(run, dict(zip(("test_acc", "attack_acc", "single_query_acc", "label_only_acc"), values)))
        tracker.finish(run)
    failed = tracker.child_run("t999", summary, {"dataset": "digits", "optimizer": "sam", "seed": 0})
    tracker.finish(failed, failed_reason="diverged at epoch 1")
    assert len(tracker._find(**{TAG_TRIAL: "t999"})) == 1
    return tracker, summary


def spec():
    return parse_spec(SPEC)
