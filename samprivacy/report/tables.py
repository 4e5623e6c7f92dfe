"""The paper's two tables for a sweep, from its configurations (means and standard deviations over seeds).

    table1(configs) -> Table   test accuracy, best single-query and best label-only attack accuracy, and the
                               strong attacks' AUC and TPR at 0.1% FPR when the runs have them, as mean ± std
    table2(configs) -> Table   each of those as a percent change of the mean against SGD on the same dataset
    render(table, "md" | "csv" | "latex") -> str

One row per configuration (dataset, method: an optimizer or a defense, and the hyperparameters that differ between
rows); a sweep at the paper's fixed hyperparameters has one per dataset and method, as in the paper. Table 2's baseline on a
dataset is its SGD configuration with the highest mean test accuracy (the paper's tuned SGD).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from samprivacy.catalog import DEFENSES, OPTIMIZERS, POPULATION_ATTACKS, TRAINING_DEFENSES, attack_measure_metric
from samprivacy.errors import ConfigError
from samprivacy.report.records import ConfigResult, describe, varying_params

FORMATS = ("md", "csv", "latex")
BASELINE = "sgd"
# (metric, header): Table 1's columns in the paper's order; strong attacks follow when the runs report them.
PAPER_COLUMNS = (("test_acc", "test acc"), ("single_query_acc", "single-query attack acc"),
                 ("label_only_acc", "label-only attack acc"))
STRONG_MEASURES = (("auc", "AUC"), ("tpr_at_fpr_0.001", "TPR@0.1%FPR"))
EPSILON = ("epsilon", "ε")  # DP rows: the epsilon the accountant spent (a number, not a percent)


@dataclass(frozen=True)
class Cell:
    """A number with an optional spread; `text` for label cells. kind: percent (x100) or change (signed %)."""

    value: float = math.nan
    std: float = math.nan
    text: str | None = None
    kind: str = "percent"


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = ()


def metric_columns(configs: Sequence[ConfigResult]) -> list[tuple[str, str]]:
    """The paper's columns any configuration has, then each strong attack measure any configuration has."""
    have = {m for c in configs for m, v in c.mean.items() if math.isfinite(v)}
    strong = [(attack_measure_metric(a, m), f"{a} {label}") for a in POPULATION_ATTACKS for m, label in
              STRONG_MEASURES]
    return [(m, h) for m, h in (*PAPER_COLUMNS, *strong) if m in have]


def _order(configs: Sequence[ConfigResult]) -> list[ConfigResult]:
    # optimizers first (their catalog order), then each defense (with DP as the catalog names it, dp-sgd)
    names = [*OPTIMIZERS, "dp-sgd", *DEFENSES, *TRAINING_DEFENSES]
    rank = {name: i for i, name in enumerate(names)}
    return sorted(configs, key=lambda c: (c.dataset, rank.get(c.label, len(rank)), c.label,
                                          -(c.value("test_acc") if math.isfinite(c.value("test_acc")) else -1)))


def _epsilon(configs: Sequence[ConfigResult]) -> bool:
    return any(math.isfinite(c.value(EPSILON[0])) for c in configs)


def _labels(config: ConfigResult, keys: list[str], epsilon: bool = False) -> tuple[Cell, ...]:
    cells = [Cell(text=config.dataset), Cell(text=config.label)]
    if epsilon:
        cells.append(Cell(config.value(EPSILON[0]), kind="number"))
    if keys:
        cells.append(Cell(text=describe(config, keys) or "-"))
    return (*cells, Cell(text=str(config.n)))


def _label_headers(keys: list[str], epsilon: bool = False) -> tuple[str, ...]:
    return ("dataset", "method", *([EPSILON[1]] if epsilon else []), *(["config"] if keys else []), "seeds")


def table1(configs: Sequence[ConfigResult], varying: Sequence[str] | None = None) -> Table:
    """Mean ± std over seeds of each configuration's test and attack accuracies (Table 1). `varying`: the
    configurations' `varying_params`, if known."""
    if not configs:
        raise ConfigError("no finished trial runs to report yet; wait for the sweep's trials to finish")
    columns, eps = metric_columns(configs), _epsilon(configs)
    keys = list(varying) if varying is not None else varying_params(configs)
    rows = tuple((*_labels(c, keys, eps), *(Cell(c.value(m), c.error(m)) for m, _ in columns))
                 for c in _order(configs))
    notes = ["values in %: mean ± sample standard deviation over seeds (- with one seed)"]
    if eps:
        notes.append("ε: what the DP accountant (Opacus, RDP) says the training spent, at δ = 1 / training-set "
                     "size unless the spec sets target_delta; - for methods without DP")
    if any(c.label.startswith("memguard") for c in configs):
        notes.append("memguard changes confidence vectors, never labels: label-only attacks see it undefended by "
                     "design")
    if not any(m == "label_only_acc" for m, _ in columns):
        notes.append("no label-only attack ran: add `label_only` to the spec's attacks for that column")
    if any(m.startswith(POPULATION_ATTACKS) for m, _ in columns):
        notes.append("population attacks: AUC and TPR from one ROC pooled over each trial's targets; a TPR its "
                     "non-members cannot reach (FPR below 1 / non-members) is left out of the mean")
    return Table("Table 1: test accuracy and membership-inference attack accuracy",
                 (*_label_headers(keys, eps), *(f"{h} (%)" for _, h in columns)), rows, tuple(notes))


def _baselines(configs: Sequence[ConfigResult]) -> dict[str, ConfigResult]:
    best: dict[str, ConfigResult] = {}
    for c in configs:
        if c.label == BASELINE and (c.dataset not in best or c.value("test_acc") > best[c.dataset].value("test_acc")):
            best[c.dataset] = c
    return best


def _change(value: float, base: float) -> float:
    return 100.0 * (value - base) / base if math.isfinite(value) and math.isfinite(base) and base != 0 else math.nan


def table2(configs: Sequence[ConfigResult], varying: Sequence[str] | None = None) -> Table:
    """Percent change of each configuration's means against the dataset's SGD baseline (Table 2). `varying`:
    the configurations' `varying_params`, if known."""
    if not configs:
        raise ConfigError("no finished trial runs to report yet; wait for the sweep's trials to finish")
    baselines = _baselines(configs)
    if not baselines:
        raise ConfigError(f"Table 2 compares against {BASELINE}, and the sweep has no finished {BASELINE} run; add "
                          f"`{BASELINE}: {{}}` under the spec's optimizers (or use --table 1)")
    columns, eps = metric_columns(configs), _epsilon(configs)
    keys = list(varying) if varying is not None else varying_params(configs)
    rows = []
    for c in _order(configs):
        base = baselines.get(c.dataset)
        if base is None:
            continue
        rows.append((*_labels(c, keys, eps),
                     *(Cell(_change(c.value(m), base.value(m)), kind="change") for m, _ in columns)))
    notes = [f"change of the mean against {BASELINE} on the same dataset, in % of the {BASELINE} value "
             f"(as the paper's Table 2); baseline: the {BASELINE} configuration with the best mean test accuracy"]
    missing = sorted({c.dataset for c in configs} - set(baselines))
    if missing:
        notes.append(f"left out (no {BASELINE} run to compare with): {', '.join(missing)}")
    return Table(f"Table 2: change against {BASELINE} (%)",
                 (*_label_headers(keys, eps), *(f"{h} change" for _, h in columns)), tuple(rows), tuple(notes))


# -- rendering ----------------------------------------------------------------------------------------------------

def _text(cell: Cell, latex: bool = False) -> str:
    if cell.text is not None:
        return cell.text.replace("_", r"\_") if latex else cell.text
    if not math.isfinite(cell.value):
        return "-"
    if cell.kind == "number":
        return f"{cell.value:.2f}"
    if cell.kind == "change":
        text = f"{cell.value:+.2f}%"
        return text.replace("%", r"\%") if latex else text
    pm = r" $\pm$ " if latex else " ± "
    return f"{100 * cell.value:.2f}" + (f"{pm}{100 * cell.std:.2f}" if math.isfinite(cell.std) else "")


def to_markdown(table: Table) -> str:
    lines = [f"**{table.title}**", "", "| " + " | ".join(table.headers) + " |",
             "|" + "|".join(" --- " for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(_text(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines + [""] + [f"_{n}_" for n in table.notes]) + "\n"


def to_csv(table: Table) -> str:
    """Machine-readable: numbers as fractions (not %), a `<column> std` column after each value column."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if not table.rows:
        writer.writerow(table.headers)
        return out.getvalue()
    headers = []
    for header, cell in zip(table.headers, table.rows[0]):
        headers += [header] if cell.text is not None or cell.kind == "change" else [header, f"{header} std"]
    writer.writerow(h.replace(" (%)", "") for h in headers)
    for row in table.rows:
        values: list = []
        for cell in row:
            if cell.text is not None:
                values.append(cell.text)
            elif cell.kind == "change":
                values.append("" if not math.isfinite(cell.value) else f"{cell.value:.4f}")
            else:
                values += ["" if not math.isfinite(x) else f"{x:.6g}" for x in (cell.value, cell.std)]
        writer.writerow(values)
    return out.getvalue()


def to_latex(table: Table) -> str:
    spec = "".join("l" if c.text is not None else "r" for c in table.rows[0]) if table.rows else "l" * len(
        table.headers)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(table.title)}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_latex_escape(h) for h in table.headers) + r" \\", r"\midrule"]
    lines += [" & ".join(_text(c, latex=True) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("%", r"\%").replace("_", r"\_").replace("&", r"\&")


def render(table: Table, fmt: str) -> str:
    renderers = {"md": to_markdown, "csv": to_csv, "latex": to_latex}
    if fmt not in renderers:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return renderers[fmt](table)
