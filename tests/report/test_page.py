"""The MLflow UI text: the experiment description's summary line and links, and saved views as MLflow 3.17 stores
them (checked against a view saved by the UI itself, see test_live_sweep)."""

from __future__ import annotations

from samprivacy.report import page
from samprivacy.report.records import SweepResults, TrialRecord

OBJECTIVES = {"test_acc": "max", "attack_acc": "min"}


def results() -> SweepResults:
    def trial(run, optimizer, seed, test, attack, rho=None):
        params = {"dataset": "digits", "optimizer": optimizer, "seed": str(seed), **({"rho": rho} if rho else {})}
        return TrialRecord(run, f"{optimizer}-{run}", params, {"test_acc": test, "attack_acc": attack})

    trials = [trial("r1", "sgd", 0, 0.80, 0.60), trial("r2", "sgd", 1, 0.82, 0.62),
              trial("r3", "sam", 0, 0.90, 0.70, rho="0.05"), trial("r4", "sam", 0, 0.70, 0.75, rho="0.2")]
    return SweepResults.build("demo", OBJECTIVES, trials, experiment_id="7", summary_run_id="S")


def test_the_description_starts_with_a_one_line_summary_then_plot_and_front():
    text = page.experiment_description(results(), "report/pareto.png", tables=["**Table 1**"])
    first = text.splitlines()[0]
    assert first.startswith("**Pareto front of sweep `demo`: 2 of 3 configurations**") and "(4 trial runs)" in first
    assert "![Pareto front](get-artifact?path=report%2Fpareto.png&run_uuid=S)" in text
    assert "(#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=samprivacy-front)" in text
    assert "[sweep summary](#/experiments/7/runs/S)" in text and text.rstrip().endswith("**Table 1**")
    table = page.front_table(results()).splitlines()
    assert table[0] == "| method | config | seeds | test_acc | attack_acc | MLflow |"
    assert table[2].startswith("| sam | rho=0.05 | 1 | 0.9000 | 0.7000 | [sam-r3](#/experiments/7/runs/r3) |")
    assert table[3].startswith("| sgd | - | 2 | 0.8100 ± 0.0141 | 0.6100 ± 0.0141 | [2 runs](")
    assert "searchFilter=tags.%60samprivacy.config_id%60%20%3D%20%27" in table[3]


def test_saved_views_round_trip_in_the_uis_format():
    views = dict(page.sweep_views(results()))
    assert set(views) == {"mlflow.sharedViewState.samprivacy-front", "mlflow.sharedViewState.samprivacy-trials"}
    front = views["mlflow.sharedViewState.samprivacy-front"]
    assert '"name": "Pareto front"' in front and '"state": "deflate;' in front
    state = page.read_view_state(front)
    assert state["searchFilter"] == ("tags.`samprivacy.sweep` = 'demo' and tags.`samprivacy.kind` = 'trial' "
                                     "and tags.pareto = 'true'")
    assert state["orderByKey"] == "metrics.`test_acc`" and state["orderByAsc"] is False
    assert state["selectedColumns"] == ["metrics.`test_acc`", "metrics.`attack_acc`", "params.`method`",
                                        "params.`optimizer`", "params.`rho`", "params.`seed`", "tags.`pareto`"]
    # the keys the UI itself writes (captured from MLflow 3.17.2 saving a view): none missing, none extra
    assert set(state) == {"searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter",
                          "datasetsFilter", "modelVersionFilter", "selectedColumns", "columnOrder", "columnWidths",
                          "runsHiddenMode", "viewMaximized", "runListHidden", "isAccordionReordered",
                          "useGroupedValuesInCharts", "hideEmptyCharts", "groupBy", "groupsExpanded",
                          "globalLineChartConfig"}


def test_a_large_front_and_long_tables_fit_mlflow_s_limits_and_say_where_the_rest_is():
    # 300 configurations, every one on the front (test and attack accuracy rise together)
    trials = [TrialRecord(f"r{i}", f"sgd-r{i}", {"dataset": "digits", "optimizer": "sgd", "seed": "0",
                                                 "lr": f"{0.001 * (i + 1):.3f}"},
                          {"test_acc": 0.5 + i / 1000, "attack_acc": 0.5 + i / 1000}) for i in range(300)]
    big = SweepResults.build("big", OBJECTIVES, trials, experiment_id="7", summary_run_id="S")
    assert len(big.front()) == 300
    table1 = "**Table 1: test accuracy**\n" + "\n".join(f"| row {i} | 0.5 |" for i in range(2000))
    for limit, tables in ((page.EXPERIMENT_NOTE_CHARS, ()), (page.RUN_NOTE_CHARS, (table1, "**Table 2: x**"))):
        text = page.experiment_description(big, "report/pareto.png", tables=tables, limit=limit)
        assert len(text) <= limit
        assert text.startswith("**Pareto front of sweep `big`: 300 of 300 configurations**")
        kept = [line for line in text.splitlines() if line.startswith("| sgd |")]
        assert 0 < len(kept) < 300
        assert f"... and {300 - len(kept)} more configurations on the front: `report/front.md`" in text
    assert "Table 1: too long for this note" in text and "**Table 2: x**" in text  # what fits is kept
    assert page.front_table(big).count("\n| sgd |") == 300  # the file holds the whole front
