"""Every file of a sweep's report, written into one folder from its `SweepResults`:

    pareto.png, pareto.html   the front of configuration means (first two objectives), by method, ± std
    front.md                  the front as a markdown table with links into the MLflow UI
    table1.{md,csv,tex}       Table 1; table2.{md,csv,tex} when the sweep has an SGD baseline
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samprivacy.errors import ConfigError
from samprivacy.report import page, tables
from samprivacy.report.pareto import default_reference, hypervolume_2d
from samprivacy.report.plots import plot_front_html, plot_front_png
from samprivacy.report.records import SweepResults, describe

EXTENSIONS = {"md": "md", "csv": "csv", "latex": "tex"}


@dataclass(frozen=True)
class ReportFiles:
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)  # e.g. "pareto.png" -> path
    markdown_tables: tuple[str, ...] = ()
    hypervolume: float | None = None
    front_size: int = 0


def run_link(base: str, experiment_id: str | None, run_id: str) -> str:
    """Where a click on a plot point goes: the run's page in the MLflow UI at `base` ("" = this UI's root)."""
    return f"{base.rstrip('/')}/{page.run_url(experiment_id or '0', run_id)}"


def build_tables(results: SweepResults) -> list[tables.Table]:
    out = [tables.table1(results.configs, results.varying)]
    try:
        out.append(tables.table2(results.configs, results.varying))
    except ConfigError:  # no SGD run: Table 2 has no baseline (`samprivacy report --table 2` says so)
        pass
    return out


def write_report(results: SweepResults, folder: str | Path, link_base: str = "") -> ReportFiles:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not results.configs:
        return ReportFiles(folder)
    names, modes = list(results.objectives), list(results.objectives.values())
    mask, points, errors = results.front_mask(), results.points(), results.errors()
    keys = list(results.varying)
    labels = [f"{c.label} {describe(c, keys)}".strip() for c in results.configs]
    multi = len({c.dataset for c in results.configs}) > 1
    groups = [f"{c.label} ({c.dataset})" if multi else c.label for c in results.configs]  # colour by method
    files: dict[str, Path] = {}
    hypervolume = None
    if len(names) >= 2:
        title = f"{results.name}: Pareto front of {len(results.configs)} configurations" + (
            f" (front on all {len(names)} objectives)" if len(names) > 2 else "")
        kwargs: dict[str, Any] = dict(names=names[:2], mask=mask, labels=labels, groups=groups, errors=errors[:, :2], title=title)
        files["pareto.png"] = plot_front_png(points[:, :2], modes[:2], folder / "pareto.png", **kwargs)
        details = [{"dataset": c.dataset, "method": c.label, "optimizer": c.optimizer, **c.params,
                    "seeds": list(c.seeds),
                    "runs": list(c.run_ids)} for c in results.configs]
        links = [run_link(link_base, results.experiment_id, c.run_ids[0]) for c in results.configs]
        files["pareto.html"] = plot_front_html(points[:, :2], modes[:2], folder / "pareto.html", details=details,
                                               links=links, **kwargs)
    if len(names) == 2:
        hypervolume = hypervolume_2d(points, modes, default_reference(modes))
    files["front.md"] = folder / "front.md"
    files["front.md"].write_text(page.front_table(results) + "\n", encoding="utf-8")
    markdown = []
    for number, table in enumerate(build_tables(results), start=1):
        for fmt, ext in EXTENSIONS.items():
            path = folder / f"table{number}.{ext}"
            path.write_text(tables.render(table, fmt), encoding="utf-8")
            files[path.name] = path
        markdown.append(tables.to_markdown(table))
    return ReportFiles(folder, files, tuple(markdown), hypervolume, int(mask.sum()))
