"""The sweep service end to end on a local Ray with SQLite MLflow/Optuna: counts, tags, the front, failures."""

from __future__ import annotations

import json

import optuna
import pytest
from mlflow.tracking import MlflowClient

from samprivacy.cli import main
from samprivacy.spec import parse_spec
from samprivacy.sweep import runner
from samprivacy.report.pareto import non_dominated
from samprivacy.tags import TAG_KIND, TAG_TRIAL

pytestmark = pytest.mark.slow

TINY = {
    "name": "tiny", "datasets": ["digits"], "seeds": [0],
    "optimizers": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.2, "log": True}}},
    "train": {"epochs": 2, "batch_size": 128, "lr": 0.05},
    "attacks": ["loss", "confidence"], "trials": 4, "max_concurrent": 2,
    "resources": {"cpu": 1, "gpu": 0}, "sampler": {"name": "random", "seed": 0},
}


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    yield
    import ray

    ray.shutdown()


def runs_of(workdir, name):
    client = MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    return client, experiment, client.search_runs([experiment.experiment_id], max_results=1000)


def test_a_sweep_leaves_one_parent_and_one_child_per_trial(tmp_path, capsys):
    spec = parse_spec(TINY)
    outcome = runner.run(spec, workdir=tmp_path)
    client, experiment, runs = runs_of(tmp_path, "tiny")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parents = [r for r in runs if r.data.tags.get(TAG_KIND) == "sweep"]
    children = [r for r in runs if r.data.tags.get(TAG_KIND) == "trial"]
    duplicates = [r for r in runs if r.data.tags.get(TAG_KIND) == "duplicate"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4 and len({r.data.tags[TAG_TRIAL] for r in children}) == 4
    # trial runs at the top level (MLflow's runs table would collapse nested runs), pointing to the summary run
    assert all("mlflow.parentRunId" not in r.data.tags for r in children)
    assert all(r.data.tags["samprivacy.sweep_run_id"] == parents[0].info.run_id for r in children)
    assert all(r.info.status == "FINISHED" and {"test_acc", "attack_acc"} <= set(r.data.metrics) for r in children)
    # per-epoch curves and artifacts
    history = client.get_metric_history(children[0].info.run_id, "val_acc")
    assert [m.step for m in history] == [1, 2]
    assert {a.path for a in client.list_artifacts(children[0].info.run_id)} >= {"model.pt", "splits.npz", "roc.npz"}
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id, "pareto")} == {"pareto/pareto.json"}
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")} >= {
        "report/pareto.png", "report/pareto.html", "report/front.md", "report/table1.md", "report/table2.csv"}
    assert "Pareto front of sweep `tiny`" in experiment.tags["mlflow.note.content"]
    # Optuna: every trial COMPLETE; the pareto tags are exactly the non-dominated trials
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    # the random sampler may propose sgd (no parameters) again: reused, not trained, and recorded as such
    repeated = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert len(study.trials) == 4 + len(repeated) and len(duplicates) == len(repeated)
    assert outcome["status"]["duplicates"] == len(repeated)
    points = [[r.data.metrics["test_acc"], r.data.metrics["attack_acc"]] for r in children]
    mask = non_dominated(points, ["max", "min"])
    assert [r.data.tags["pareto"] == "true" for r in children] == list(mask)
    assert outcome["status"]["complete"] == 4 and len(outcome["pareto"]["front"]) == int(mask.sum())
    # each trial's MLflow params match the config Optuna chose
    for r in children:
        number = int(r.data.params["optuna_trial"])
        assert r.data.params["optimizer"] == study.trials[number].params.get("optimizer", "sgd")

    # status / pareto read the same record without Ray
    capsys.readouterr()
    assert main(["status", "tiny", "--workdir", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["complete"] == 4 and status["failed"] == 0
    by_id = {r.data.tags[TAG_TRIAL]: r.data.metrics for r in children}
    for row in status["front"]:  # values land under the right objective names (order is Optuna's)
        assert row["test_acc"] == pytest.approx(by_id[row["trial_id"]]["test_acc"])
        assert row["attack_acc"] == pytest.approx(by_id[row["trial_id"]]["attack_acc"])
    assert main(["pareto", "tiny", "--workdir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["front"]) == int(mask.sum()) and 0 < report["hypervolume"] <= 1
    # a second `run` refuses instead of mixing two sweeps in one study
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(json.dumps(TINY))
    assert main(["run", str(spec_file), "--workdir", str(tmp_path)]) == 2
    # the way out, whole on one line to copy, however long the workdir's path (messages are not wrapped)
    assert f"samprivacy resume tiny --workdir {tmp_path}`" in capsys.readouterr().err


def test_a_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(tmp_path):
    spec = parse_spec({**TINY, "name": "diverge", "optimizers": {"sharpreg": {"rho": 0.01, "lam": 1.5, "xi": 0.3}},
                       "train": {"epochs": 2, "batch_size": 128, "momentum": 0.0,
                                 "lr": {"choices": [0.05, 1.0e30]}},
                       "sampler": {"name": "grid"}, "trials": None})
    outcome = runner.run(spec, workdir=tmp_path)
    study = optuna.load_study(study_name="diverge", storage=f"sqlite:///{tmp_path}/optuna.db")
    states = {t.params["lr"]: t for t in study.trials}
    assert states[0.05].state.name == "COMPLETE"
    assert states[1.0e30].state.name == "FAIL"
    assert "diverged at epoch 1" in states[1.0e30].user_attrs["fail_reason"]
    assert outcome["status"]["failed"] == 1 and outcome["status"]["running"] == 0
    client, _, runs = runs_of(tmp_path, "diverge")
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1 and "diverged" in failed[0].data.tags["samprivacy.failure"]


def test_missing_data_stops_the_sweep_before_anything_starts(tmp_path, capsys):
    spec_file = tmp_path / "purchase.yaml"
    spec_file.write_text(json.dumps({**TINY, "name": "nodata", "datasets": ["purchase100"],
                                     "data_root": str(tmp_path / "no-such-folder")}))
    assert main(["run", str(spec_file), "--workdir", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err
    assert "no-such-folder" in err and "Traceback" not in err
    assert not (tmp_path / "work").exists()  # nothing half-written


def test_replicates_train_every_seed_and_record_the_mean_and_std(tmp_path):
    """repeats: 2 through Ray Tune (trials that train nothing: tests/support/trivial.py)."""
    from tests.support.trivial import TRIVIAL

    spec = parse_spec({**{k: v for k, v in TINY.items() if k != "seeds"}, "name": "replicates", "repeats": 2, "trials": 3, "optimizers": {
        "sam": {"rho": {"choices": [0.05, 0.1, 0.2]}}}, "sampler": {"name": "grid"}})
    outcome = runner.run(spec, workdir=tmp_path, work=TRIVIAL)
    client, _, runs = runs_of(tmp_path, "replicates")
    trials = [r for r in runs if r.data.tags.get(TAG_KIND) == "trial"]
    configs = [r for r in runs if r.data.tags.get(TAG_KIND) == "config"]
    assert len(trials) == 6 and len(configs) == 3
    assert sorted(r.data.params["seed"] for r in trials) == ["0", "0", "0", "1", "1", "1"]
    for config in configs:  # the mean and std over the two trial runs of the same configuration
        seeds = [r for r in trials if r.data.tags["samprivacy.config_id"] == config.data.tags["samprivacy.config_id"]]
        values = [r.data.metrics["test_acc"] for r in seeds]
        assert len(seeds) == 2 and config.data.metrics["test_acc"] == pytest.approx(sum(values) / 2)
        assert config.data.metrics["test_acc_std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
        assert config.data.metrics["repeats"] == 2
    front = {r["number"] for r in outcome["pareto"]["front"]}
    assert {int(c.data.tags["samprivacy.proposal"]) for c in configs if c.data.tags["pareto"] == "true"} == front
    assert all(r["test_acc_std"] is not None for r in outcome["pareto"]["front"])
    assert outcome["status"]["complete"] == 3 and outcome["status"]["repeats"] == 2


def test_a_long_sweep_runs_as_segments_that_agree_with_the_study(tmp_path, monkeypatch):
    """Tune experiments of at most SEGMENT_TRIALS trials (3 here): tune/<name>, <name>.1, <name>.2."""
    from ray.tune import ExperimentAnalysis

    from tests.support.trivial import TRIVIAL

    monkeypatch.setattr(runner, "SEGMENT_TRIALS", 3)
    spec = parse_spec({**TINY, "name": "segments", "trials": 7, "optimizers": {"sgd": {}},
                       "train": {"epochs": 1, "lr": {"low": 0.01, "high": 0.1}}})
    outcome = runner.run(spec, workdir=tmp_path, work=TRIVIAL)
    segments = [tmp_path / "tune" / name for name in ("segments", "segments.1", "segments.2")]
    tune_ids = [t.trial_id for path in segments for t in ExperimentAnalysis(str(path)).trials
                if t.status == "TERMINATED"]
    assert [len(ExperimentAnalysis(str(p)).trials) for p in segments] == [3, 3, 1]
    assert not (tmp_path / "tune" / "segments.3").exists()
    study = optuna.load_study(study_name="segments", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert sorted(t.user_attrs["tune_trial_id"] for t in study.trials) == sorted(tune_ids)
    _, _, runs = runs_of(tmp_path, "segments")
    assert sorted(r.data.tags[TAG_TRIAL] for r in runs if r.data.tags.get(TAG_KIND) == "trial") == sorted(tune_ids)
    assert outcome["status"]["complete"] == 7 and outcome["status"]["proposals"] == 7


def test_the_end_of_a_sweep_publishes_what_reading_every_run_publishes(tmp_path, monkeypatch):
    """The driver keeps the finished runs as trials end (publish.LiveResults), so its end reads none again: what
    it publishes (results, report files, pareto tags) is what a full read of MLflow gives."""
    from samprivacy.report.bundle import write_report
    from samprivacy.report.runs import load_results
    from samprivacy.sweep import publish as publishing
    from tests.support.trivial import TRIVIAL

    full_reads, published = [], []
    monkeypatch.setattr(publishing, "load_results", lambda *a, **k: full_reads.append(a) or load_results(*a, **k))
    monkeypatch.setattr(runner, "publish", lambda *a, **k: published.append(publishing.publish(*a, **k)) or published[-1])
    spec = parse_spec({**TINY, "name": "live", "trials": 12, "optimizers": {
        "sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.2, "log": True}}},
        "train": {"epochs": 1, "lr": {"low": 0.01, "high": 0.1}}})
    runner.run(spec, workdir=tmp_path, work=TRIVIAL)
    assert full_reads == [] and len(published) == 1  # the driver's copy vouched for itself

    full = load_results(f"sqlite:///{tmp_path}/mlflow.db", "live", spec.objectives)
    assert len(full.trials) == 12 and repr(published[0].results) == repr(full)  # repr: NaN stds compare equal
    again = write_report(full, tmp_path / "from-a-full-read")
    for name, path in published[0].report.files.items():
        assert path.read_bytes() == again.files[name].read_bytes(), name
    client, _, runs = runs_of(tmp_path, "live")
    front = {run for config in full.front() for run in config.run_ids}
    tags = {r.info.run_id: r.data.tags.get("pareto") for r in runs if r.data.tags.get(TAG_KIND) == "trial"}
    assert len(tags) == 12 and tags == {run: str(run in front).lower() for run in tags} and front
