"""Populations in the sweep service: a CPU sweep with `population` from the CLI, whose MLflow trial runs carry
the LiRA / RMIA metrics and the per-example arrays; and `samprivacy memorization` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from samprivacy.cli import main
from samprivacy.pipeline import run_population_trial
from samprivacy.spec import TrialConfig

pytestmark = pytest.mark.slow

POPULATION = {"models": 6, "rmia": {"reference_models": 1}}
SPEC = {
    "name": "pop-sweep", "datasets": ["digits"], "seeds": [0],
    "optimizers": {"sgd": {}, "sam": {"rho": 0.05}},
    "train": {"epochs": 2, "batch_size": 128, "lr": 0.05, "hidden": [32]},
    "population": POPULATION, "attacks": ["loss", "lira", "rmia"],
    "objectives": {"test_acc": "max", "lira_tpr_at_fpr_0.01": "min"},
    "sampler": {"name": "grid", "seed": 0}, "max_concurrent": 2, "resources": {"cpu": 1, "gpu": 0},
}


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    yield
    import ray

    ray.shutdown()


def test_a_population_sweep_logs_strong_attack_metrics_and_arrays(tmp_path):
    spec_file = tmp_path / "pop.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    assert main(["run", str(spec_file), "--workdir", str(tmp_path / "w")]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path}/w/mlflow.db")
    experiment = client.get_experiment_by_name("pop-sweep")
    trials = [r for r in client.search_runs([experiment.experiment_id])
              if r.data.tags.get("samprivacy.kind") == "trial"]
    assert len(trials) == 2 and {r.data.params["optimizer"] for r in trials} == {"sgd", "sam"}
    for run in trials:
        metrics = run.data.metrics
        assert {"lira_auc", "lira_tpr_at_fpr_0.001", "rmia_auc", "test_acc_std", "lira_auc_per_target_std",
                "lira_tpr_at_fpr_0.001_ci_low", "lira_tpr_at_fpr_0.001_negatives",
                "conf_var_out", "attack_lira_accuracy"} <= set(metrics)
        assert 0 <= metrics["lira_auc"] <= 1 and metrics["test_acc_std"] >= 0
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"population.npz", "summary.json"}
        local = client.download_artifacts(run.info.run_id, "population.npz", str(tmp_path / run.info.run_id))
        with np.load(local) as f:
            assert f["keep"].shape[0] == 6 and f["lira_scores"].shape == f["keep"].shape
        # one curve per metric over the population's models: 6 models x 2 epochs
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc")) == list(range(1, 13))
        # the sweep trained the population as one stacked model; in a row, its results are the same
        with open(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path / run.info.run_id))) as f:
            summary = json.load(f)
        in_a_row = run_population_trial(TrialConfig.model_validate(summary["config"]), stacked=False).summary()
        for key in ("test_acc", "lira_auc", "lira_tpr_at_fpr_0.01", "rmia_auc", "attack_acc", "conf_var_out"):
            assert metrics[key] == pytest.approx(in_a_row[key], rel=1e-4, abs=1e-4), key


def test_memorization_command_reports_every_optimizer_on_the_reference_buckets(tmp_path, capsys):
    spec = {**SPEC, "name": "mem", "population": {"models": 4}, "attacks": ["loss"],
            "objectives": {"test_acc": "max", "attack_acc": "min"},
            "datasets": ["longtail"], "train": {"epochs": 3, "batch_size": 128, "lr": 0.1}}
    spec_file = tmp_path / "mem.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "mem.json"
    assert main(["memorization", str(spec_file), "--workdir", str(tmp_path / "w"), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["reference"] == "sgd" and doc["models"] == 4 and set(doc["optimizers"]) == {"sgd", "sam"}
    for o in doc["optimizers"].values():
        assert len(o["bucket_acc"]) == 5 and len(o["bucket_stderr"]) == 5
        assert 0 <= o["singleton_auc"] <= 1  # longtail plants singletons
    printed = capsys.readouterr().out
    assert "ranks the planted singletons with AUC" in printed and "buckets from sgd" in printed
    models = sorted((tmp_path / "w" / "memorization").rglob("model-*.pt"))
    assert len(models) == 8
    # a second run trains nothing: every model's record is on disk
    stamps = [p.stat().st_mtime_ns for p in models]
    assert main(["memorization", str(spec_file), "--workdir", str(tmp_path / "w")]) == 0
    assert [p.stat().st_mtime_ns for p in models] == stamps
    client = MlflowClient(f"sqlite:///{tmp_path}/w/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("mem").experiment_id],
                              "tags.`samprivacy.kind` = 'memorization'")
    assert len(runs) == 2 and "sam_bucket1_acc" in runs[0].data.metrics


def test_memorization_refuses_a_spec_it_cannot_analyse(tmp_path, capsys):
    spec = {**SPEC, "name": "bad", "optimizers": {"sam": {"rho": {"low": 0.01, "high": 0.1}}}, "trials": 2,
            "sampler": {"name": "random"}}
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    assert main(["memorization", str(spec_file), "--workdir", str(tmp_path / "w")]) == 2
    assert "fix every parameter" in capsys.readouterr().err
