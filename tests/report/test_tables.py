"""Table 1 and Table 2 on known numbers, in markdown, CSV and LaTeX."""

from __future__ import annotations

import csv
import io

import pytest

from samprivacy.errors import ConfigError
from samprivacy.report import tables
from samprivacy.report.records import TrialRecord, group_configs


def run(run_id, optimizer, seed, test, single, label, dataset="digits", **extra) -> TrialRecord:
    params = {"dataset": dataset, "optimizer": optimizer, "seed": str(seed)}
    metrics = {"test_acc": test, "single_query_acc": single, "label_only_acc": label, **extra}
    return TrialRecord(run_id, run_id, params, metrics)


CONFIGS = group_configs([
    run("a", "sgd", 0, 0.80, 0.60, 0.50), run("b", "sgd", 1, 0.82, 0.62, 0.52),
    run("c", "sam", 0, 0.84, 0.66, 0.54), run("d", "sam", 1, 0.86, 0.64, 0.56),
    run("e", "sharpreg", 0, 0.77, 0.55, 0.49),
])


def test_table1_is_mean_and_std_in_percent_per_optimizer():
    table = tables.table1(CONFIGS)
    assert table.headers == ("dataset", "method", "seeds", "test acc (%)", "single-query attack acc (%)",
                             "label-only attack acc (%)")
    text = tables.to_markdown(table)
    assert "| digits | sgd | 2 | 81.00 ± 1.41 | 61.00 ± 1.41 | 51.00 ± 1.41 |" in text
    assert "| digits | sharpreg | 1 | 77.00 | 55.00 | 49.00 |" in text  # one seed: no ± at all
    assert text.index("| sgd |") < text.index("| sam |") < text.index("| sharpreg |")  # the paper's order


def test_table2_is_percent_change_of_the_mean_against_sgd():
    table = tables.table2(CONFIGS)
    text = tables.to_markdown(table)
    assert "| digits | sgd | 2 | +0.00% | +0.00% | +0.00% |" in text
    # sam: test 85 vs 81 -> +4.94%; single-query 65 vs 61 -> +6.56%; label-only 55 vs 51 -> +7.84%
    assert "| digits | sam | 2 | +4.94% | +6.56% | +7.84% |" in text
    assert "| digits | sharpreg | 1 | -4.94% | -9.84% | -3.92% |" in text


def test_strong_attack_columns_appear_when_the_runs_have_them():
    configs = group_configs([run("a", "sgd", 0, 0.8, 0.6, 0.5, lira_auc=0.7, **{"lira_tpr_at_fpr_0.001": 0.02}),
                             run("b", "sam", 0, 0.8, 0.6, 0.5, lira_auc=0.75)])
    headers = tables.table1(configs).headers
    assert headers[-2:] == ("lira AUC (%)", "lira TPR@0.1%FPR (%)")
    assert "rmia AUC (%)" not in headers
    assert "lira AUC change" in tables.table2(configs).headers


def test_table2_without_sgd_names_the_fix_and_leaves_out_datasets_without_a_baseline():
    with pytest.raises(ConfigError, match="add `sgd: {}` under the spec's optimizers"):
        tables.table2(group_configs([run("c", "sam", 0, 0.8, 0.6, 0.5)]))
    mixed = group_configs([run("a", "sgd", 0, 0.8, 0.6, 0.5), run("b", "sam", 0, 0.8, 0.6, 0.5, dataset="longtail")])
    table = tables.table2(mixed)
    assert len(table.rows) == 1 and "left out (no sgd run to compare with): longtail" in table.notes
    with pytest.raises(ConfigError, match="no finished trial runs"):
        tables.table1([])


def test_csv_is_machine_readable_and_latex_compiles_to_a_tabular():
    rows = list(csv.reader(io.StringIO(tables.render(tables.table1(CONFIGS), "csv"))))
    assert rows[0][:5] == ["dataset", "method", "seeds", "test acc", "test acc std"]
    assert rows[1][:5] == ["digits", "sgd", "2", "0.81", "0.0141421"] and rows[3][4] == ""
    latex = tables.render(tables.table2(CONFIGS), "latex")
    assert r"\begin{tabular}{lllrrr}" in latex and r"+4.94\%" in latex and latex.count(r"\\") == 4  # header + 3 rows
    assert r"81.00 $\pm$ 1.41" in tables.render(tables.table1(CONFIGS), "latex")
    with pytest.raises(ConfigError, match="--format must be one of md, csv, latex"):
        tables.render(tables.table1(CONFIGS), "html")
