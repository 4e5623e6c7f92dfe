"""Publishing to MLflow, on a real SQLite store filled by the test (no Ray, no training)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from samprivacy.report import page
from samprivacy.report.runs import load_results
from samprivacy.sweep.publish import publish
from samprivacy.tags import TAG_NOTE

from .fake_sweep import RESULTS, fill, spec


def test_publish_tags_the_front_of_configuration_means_and_writes_the_ui_text(tmp_path):
    tracker, summary = fill(f"sqlite:///{tmp_path}/mlflow.db", tmp_path)
    published = publish(spec(), tracker, summary, tmp_path / "report")
    client = tracker.client
    runs = {r.info.run_id: r for r in tracker.child_runs()}
    finished = [r for r in runs.values() if r.info.status == "FINISHED"]
    assert len(finished) == len(RESULTS) and len(published.results.configs) == 4  # the FAILED run is left out
    # sgd (81/61), sam rho=.05 (85/65), sharpreg (77/55) are the front of means; sam rho=.1 (83/70) is not
    on_front = {(r.data.params["optimizer"], r.data.params.get("rho")) for r in finished if r.data.tags["pareto"] == "true"}
    assert on_front == {("sgd", None), ("sam", "0.05"), ("sharpreg", "0.01")}
    assert all("samprivacy.config_id" in r.data.tags for r in finished)
    assert published.report.front_size == 3 and 0 < published.report.hypervolume < 1
    assert published.ui_path == f"#/experiments/{tracker.experiment_id}/runs?workflowType=machine_learning"
    artifacts = {a.path for a in client.list_artifacts(summary, "report")}
    assert {"report/pareto.png", "report/pareto.html", "report/front.md", "report/table1.md", "report/table1.csv",
            "report/table1.tex", "report/table2.md"} <= artifacts
    experiment = client.get_experiment(tracker.experiment_id)
    assert experiment.tags[TAG_NOTE].startswith("**Pareto front of sweep `fake`: 3 of 4 configurations**")
    # the saved view, run through MLflow, lists the front's trial runs: not a configuration-mean run tagged pareto
    tracker.record_run("config", {"samprivacy.config_id": "c0"}, summary, {}, {}, {"pareto": "true"}, "config-c0")
    view = page.read_view_state(experiment.tags["mlflow.sharedViewState.samprivacy-front"])["searchFilter"]
    listed = {r.info.run_id for r in client.search_runs([tracker.experiment_id], view)}
    assert listed == {r.info.run_id for r in finished if r.data.tags["pareto"] == "true"}
    note = client.get_run(summary).data.tags[TAG_NOTE]
    assert "**Table 1:" in note and "**Table 2:" in note and "| digits | sam | rho=0.05 | 2 | +4.94% |" in note


def test_publishing_again_is_idempotent(tmp_path):
    tracker, summary = fill(f"sqlite:///{tmp_path}/mlflow.db", tmp_path)
    first = publish(spec(), tracker, summary, tmp_path / "report")
    again = publish(spec(), tracker, summary, tmp_path / "report")  # e.g. after a resume
    assert [c.config_id for c in again.results.front()] == [c.config_id for c in first.results.front()]
    assert {t.config_id for t in again.results.trials} == {t.config_key for t in first.results.trials}


def test_an_empty_sweep_publishes_a_description_without_a_front(tmp_path):
    from samprivacy.sweep.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "fake", (tmp_path / "art").as_uri())
    summary = tracker.parent_run()
    published = publish(spec(), tracker, summary, tmp_path / "report")
    assert published.report.front_size == 0 and published.report.files == {}
    assert "0 of 0 configurations" in tracker.client.get_experiment(tracker.experiment_id).tags[TAG_NOTE]


def test_the_driver_s_copy_of_the_runs_publishes_what_a_full_read_does_and_writes_only_changed_tags(tmp_path):
    from samprivacy.sweep.publish import LiveResults

    tracker, summary = fill(f"sqlite:///{tmp_path}/mlflow.db", tmp_path)
    full = publish(spec(), tracker, summary, tmp_path / "full")  # every run read; every pareto tag written
    live = LiveResults(tracker)  # a resumed driver: it reads the runs already there first
    late = tracker.child_run("t100", summary, {"dataset": "digits", "optimizer": "sgd", "seed": 0, "lr": 0.2,
                                               "epochs": 2}, tags={"pareto": "false"})
    tracker.log_metrics(late, {"test_acc": 0.99, "attack_acc": 0.50})  # dominates the whole front
    tracker.finish(late)
    live.ended(late, "t100")
    live.ended(None, "t999")  # an ended trial known by its Tune trial only (the failed run: left out)
    live.finish()
    measured = [f"t{n:03d}" for n in range(len(RESULTS))] + ["t100"]
    writes = []
    tracker.client.set_tag = lambda *args: writes.append(args) or MlflowClient.set_tag(tracker.client, *args)
    expected = repr(load_results(tracker.tracking_uri, "fake", spec().objectives))  # repr: NaN stds compare equal
    published = publish(spec(), tracker, summary, tmp_path / "live", live, measured)
    assert repr(published.results) == expected
    assert len(published.results.trials) == len(full.results.trials) + 1
    # the front was 3 runs (sgd's, sam rho=.05's and sharpreg's seeds) and is now t100 alone: only those change
    was_on_front = {run for config in full.results.front() for run in config.run_ids}
    assert sorted(w[0] for w in writes) == sorted(was_on_front | {late}) and len(was_on_front) == 6
    tags = {r.info.run_id: r.data.tags.get("pareto") for r in tracker.child_runs()}
    assert {run for run, tag in tags.items() if tag == "true"} == {late}


def test_a_copy_that_misses_a_measured_trial_is_not_trusted(tmp_path):
    from samprivacy.sweep.publish import LiveResults

    tracker, summary = fill(f"sqlite:///{tmp_path}/mlflow.db", tmp_path)
    live = LiveResults(tracker)
    live.finish()
    measured = [f"t{n:03d}" for n in range(len(RESULTS))]
    assert live.records(measured) is not None and live.records([*measured, "t500"]) is None
    expected = repr(load_results(tracker.tracking_uri, "fake", spec().objectives))
    published = publish(spec(), tracker, summary, tmp_path / "report", live, [*measured, "t500"])  # reads all
    assert repr(published.results) == expected


@pytest.mark.parametrize("fails", ["the first read", "the last read"])
def test_a_copy_whose_read_fails_ends_untrusted_and_never_hangs_the_end(tmp_path, monkeypatch, fails):
    import threading

    from samprivacy.sweep import publish as publishing

    tracker, summary = fill(f"sqlite:///{tmp_path}/mlflow.db", tmp_path)

    def broken(*args, **kwargs):
        raise OSError("the store went away")

    monkeypatch.setattr(publishing, "search" if fails == "the first read" else "runs_by_id", broken)
    live = publishing.LiveResults(tracker)
    live.ended("some-run", "t000")
    ending = threading.Thread(target=live.finish, daemon=True)  # the last read fails with finish's own request
    ending.start()
    ending.join(timeout=30)
    assert not ending.is_alive() and isinstance(live.error, OSError)
    assert live.records(["t000"]) is None  # publish reads everything instead
