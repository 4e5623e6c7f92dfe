"""What the MLflow UI shows of a sweep (MLflow 3.17), as plain text: the experiment's description (markdown) and
saved views of its runs table. Pure functions; sweep.publish writes them to MLflow.

What MLflow 3.17's UI does with them (measured in headless Chromium, see docs/architecture.md):
- the experiment description (tag `mlflow.note.content`) is rendered as markdown above the runs table and on the
  experiment's overview, collapsed to its first line; one click expands it. Images load from relative URLs, so
  `get-artifact?path=...&run_uuid=...` shows the summary run's plot inline; `#/...` links stay in the UI;
- a saved view is the experiment tag `mlflow.sharedViewState.<id>` holding {name, createdAt, updatedAt, state},
  state being the runs page's filter, sort and columns ("deflate;" + base64 of zlib, as the UI writes it). It is
  listed under the runs page's "Views" menu and opened by `?viewStateShareKey=<id>`;
- `?workflowType=machine_learning` opens an experiment on its runs table (otherwise the GenAI overview).
"""

from __future__ import annotations

import base64
import json
import math
import time
import urllib.parse
import zlib
from collections.abc import Sequence
from typing import Any

from samprivacy.report.records import ConfigResult, SweepResults, describe
from samprivacy.tags import TAG_CONFIG, TAG_KIND, TAG_PARETO, TAG_SWEEP, TAG_VIEW_PREFIX

FRONT_VIEW = "samprivacy-front"
TRIALS_VIEW = "samprivacy-trials"
ARTIFACT_DIR = "report"
WORKFLOW = "workflowType=machine_learning"
# MLflow 3's longest tag values, in characters: a longer description is cut wherever the limit falls
RUN_NOTE_CHARS, EXPERIMENT_NOTE_CHARS = 8000, 20000
_POINTER_CHARS = 300  # room kept for the line that says where the rest is


def runs_url(experiment_id: str, query: str = "") -> str:
    """The runs table of the experiment, as a link inside the UI (`#/...`)."""
    return f"#/experiments/{experiment_id}/runs?{WORKFLOW}" + (f"&{query}" if query else "")


def run_url(experiment_id: str, run_id: str) -> str:
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def view_url(experiment_id: str, view: str) -> str:
    return runs_url(experiment_id, f"viewStateShareKey={view}")


def filter_url(experiment_id: str, search_filter: str) -> str:
    return runs_url(experiment_id, "searchFilter=" + urllib.parse.quote(search_filter))


def artifact_image(run_id: str, path: str) -> str:
    return f"get-artifact?path={urllib.parse.quote(path, safe='')}&run_uuid={run_id}"


def config_link(results: SweepResults, config: ConfigResult) -> str:
    """One seed: its run; several: the runs table filtered to the configuration's runs."""
    eid = results.experiment_id or "0"
    if config.n == 1:
        return f"[{_name(results, config.run_ids[0])}]({run_url(eid, config.run_ids[0])})"
    runs = filter_url(eid, f"tags.`{TAG_CONFIG}` = '{config.config_id}'")
    return f"[{config.n} runs]({runs})"


def _name(results: SweepResults, run_id: str) -> str:
    return next((t.name for t in results.trials if t.run_id == run_id), run_id[:8])


def _cell(config: ConfigResult, metric: str) -> str:
    value, std = config.value(metric), config.error(metric)
    if not math.isfinite(value):
        return "-"
    return f"{value:.4f}" + (f" ± {std:.4f}" if math.isfinite(std) else "")


def front_table(results: SweepResults, limit: int | None = None) -> str:
    """The front as a markdown table: one row per non-dominated configuration, best first objective first. With
    `limit` (characters), the rows that fit, then where the whole table is."""
    front, keys = results.front(), list(results.varying)
    first, direction = next(iter(results.objectives.items()))
    front.sort(key=lambda c: -c.value(first) if direction.startswith("max") else c.value(first))
    datasets = len({c.dataset for c in results.configs}) > 1
    headers = ["method", *(["dataset"] if datasets else []), *(["config"] if keys else []), "seeds",
               *results.objectives, "MLflow"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    for c in front:
        cells = [c.label, *([c.dataset] if datasets else []), *([describe(c, keys) or "-"] if keys else []),
                 str(c.n), *(_cell(c, o) for o in results.objectives), config_link(results, c)]
        lines.append("| " + " | ".join(cells) + " |")
    if limit is not None and len("\n".join(lines)) > limit:
        kept, rows = lines[:2], lines[2:]
        while rows and len("\n".join(kept + rows[:1])) <= limit - _POINTER_CHARS:
            kept.append(rows.pop(0))
        return "\n".join(kept) + (f"\n\n... and {len(rows)} more configurations on the front: "
                                  f"`{ARTIFACT_DIR}/front.md` in the sweep summary run's artifacts")
    return "\n".join(lines)


def experiment_description(results: SweepResults, plot_path: str | None, tables: Sequence[str] = (),
                           limit: int = EXPERIMENT_NOTE_CHARS) -> str:
    """The experiment's description: a one-line summary (what the collapsed header shows), then links, the plot
    and the front's table (what one click on the header's expand button shows), then `tables`. At most `limit`
    characters: front rows and tables that do not fit are named with where they are (the report's files)."""
    eid, sid = results.experiment_id or "0", results.summary_run_id
    objectives = ", ".join(f"{o} ({'higher' if d.startswith('max') else 'lower'} is better)"
                           for o, d in results.objectives.items())
    front = results.front()
    lines = [f"**Pareto front of sweep `{results.name}`: {len(front)} of {len(results.configs)} configurations** "
             f"({len(results.trials)} trial runs) - expand for the plot and the table", "",
             f"Objectives: {objectives}. Means over seeds, ± sample standard deviation.", "",
             "Runs: " + " · ".join([f"[Pareto front]({view_url(eid, FRONT_VIEW)})",
                                    f"[all trials]({view_url(eid, TRIALS_VIEW)})"]
                                   + ([f"[sweep summary]({run_url(eid, sid)}) (interactive plot, Table 1 and 2)"]
                                      if sid else [])), ""]
    if plot_path and sid:
        lines += [f"![Pareto front]({artifact_image(sid, plot_path)})", ""]
    head = "\n".join(lines)
    text = head + "\n" + front_table(results, limit=limit - len(head) - 1 - _POINTER_CHARS * bool(tables)) + "\n"
    left_out = []
    for table in tables:
        if len(text) + len(table) + 2 <= limit - _POINTER_CHARS:
            text += "\n" + table + "\n"
        else:
            left_out.append(table.splitlines()[0].strip("*").split(":")[0])  # its title, e.g. "Table 1"
    if left_out:
        text += (f"\n{', '.join(left_out)}: too long for this note, in the sweep summary run's artifacts under "
                 f"`{ARTIFACT_DIR}/`\n")
    return text


def view_tag(view_id: str, name: str, search_filter: str, columns: Sequence[str], order_by: str | None = None,
             ascending: bool = False, now_ms: int | None = None) -> tuple[str, str]:
    """(tag key, tag value) of a saved runs-table view: filter, sort and visible columns.

    columns: MLflow column keys, e.g. "metrics.`test_acc`", "params.`optimizer`", "tags.`pareto`".
    """
    state = {"searchFilter": search_filter, "orderByKey": order_by or "attributes.start_time",
             "orderByAsc": ascending, "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [],
             "modelVersionFilter": "All Runs", "selectedColumns": list(columns), "columnOrder": [],
             "columnWidths": {}, "runsHiddenMode": "FIRST_10_RUNS", "viewMaximized": False, "runListHidden": False,
             "isAccordionReordered": False, "useGroupedValuesInCharts": True, "hideEmptyCharts": True,
             "groupBy": None, "groupsExpanded": {},
             "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""}}
    packed = "deflate;" + base64.b64encode(zlib.compress(json.dumps(state).encode())).decode()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return TAG_VIEW_PREFIX + view_id, json.dumps({"name": name, "createdAt": now, "updatedAt": now, "state": packed})


def read_view_state(value: str) -> dict:
    """The state dict of a saved view's tag value (the inverse of view_tag, for tests and tools)."""
    state = json.loads(value)["state"]
    if state.startswith("deflate;"):
        state = zlib.decompress(base64.b64decode(state[len("deflate;"):])).decode()
    return json.loads(state)


def sweep_views(results: SweepResults) -> list[tuple[str, str]]:
    """Two saved views: the front's runs and every trial run, with objectives, optimizer and varying params."""
    first, direction = next(iter(results.objectives.items()))
    keys = ["method", "optimizer", *results.varying, "seed"]
    if len({c.dataset for c in results.configs}) > 1:
        keys.insert(0, "dataset")
    columns = [*(f"metrics.`{o}`" for o in results.objectives), *(f"params.`{k}`" for k in keys), f"tags.`{TAG_PARETO}`"]
    order: dict[str, Any] = dict(order_by=f"metrics.`{first}`", ascending=not direction.startswith("max"))
    trials = f"tags.`{TAG_SWEEP}` = '{results.name}' and tags.`{TAG_KIND}` = 'trial'"
    # trial runs only: the runs of a configuration's mean (repeats) carry Optuna's front in their own pareto tag
    return [view_tag(FRONT_VIEW, "Pareto front", f"{trials} and tags.{TAG_PARETO} = 'true'", columns, **order),
            view_tag(TRIALS_VIEW, "All trials", trials, columns, **order)]
