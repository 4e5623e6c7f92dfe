"""A sweep on disk: its saved spec and storage, trial states, and the Pareto front (no Ray needed).

The Optuna study is the record of proposals (each ends COMPLETE or FAIL; duplicates say so); MLflow is where
people look, so the front is also written back there as `pareto=true` tags and parent-run artifacts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from samprivacy.errors import ConfigError
from samprivacy.files import write_json_atomic
from samprivacy.spec import ResolvedStorage, SweepSpec, parse_spec
from samprivacy.report import pareto, plots
from samprivacy.sweep.space import configuration, method_of, missing_params
from samprivacy.sweep.study import (ATTR_COPY_OF, ATTR_DUPLICATE_OF, ATTR_FAIL_REASON, ATTR_TUNE_TRIAL, ATTR_UNITS,
                                    STOP_REASON, bookkeeping_failure, load_study)

SWEEP_FILE = "sweep.json"
PROGRESS_FILE = "progress.json"  # the running driver's counts (running, pending, ...), rewritten every few seconds
PROGRESS_STALE_S = 30.0


@dataclass(frozen=True)
class Sweep:
    spec: SweepSpec
    storage: ResolvedStorage

    @property
    def experiment_path(self) -> str:
        return self.segment_path(0)

    def segment_path(self, segment: int) -> str:
        """The Tune experiment of one segment of the sweep: <tune storage>/<name>, then <name>.1, <name>.2, ..."""
        return f"{self.storage.tune_storage.rstrip('/')}/{self.segment_name(segment)}"

    def segment_name(self, segment: int) -> str:
        return self.spec.name if segment == 0 else f"{self.spec.name}.{segment}"

    def save(self) -> Path:
        """Write workdir/sweep.json (atomically): what `resume`, `status` and `pareto` read back."""
        # Not canonical_json(): its sorted keys would reorder `objectives`, whose order is Optuna's.
        return write_json_atomic(self.storage.workdir / SWEEP_FILE, {
            "spec": self.spec.model_dump(mode="json"), "storage": self.storage.model_dump(mode="json")})


def open_sweep(name: str, workdir: str | Path | None = None) -> Sweep:
    """The sweep saved in `workdir` (default ./runs/<name>) by `samprivacy run`."""
    directory = Path(workdir) if workdir else Path("runs") / name
    path = directory / SWEEP_FILE
    if not path.exists():
        raise ConfigError(f"no sweep '{name}' in {directory} ({SWEEP_FILE} is missing); start it with "
                          f"`samprivacy run SPEC`, or pass --workdir with the folder it ran in")
    doc = json.loads(path.read_text())
    sweep = Sweep(parse_spec(doc["spec"], str(path)), ResolvedStorage.model_validate(doc["storage"]))
    if sweep.spec.name != name:
        raise ConfigError(f"{path} holds sweep '{sweep.spec.name}', not '{name}'; check the name or --workdir")
    return sweep


def trial_rows(sweep: Sweep, study: optuna.Study | None = None) -> list[dict]:
    """One row per Optuna trial that is a proposal (a trial interrupted before its parameters were chosen is none,
    see study.INTERRUPTED): number, state, the Tune trials that measured it (`trial_id` with one
    seed), params, objective values (the mean over seeds, with `<objective>_std` when repeats > 1), the proposal
    it duplicates or copies, the failure reason. `study`: the driver's open study (its trials cached in memory),
    else the study is loaded."""
    spec = sweep.spec
    study = study if study is not None else load_study(spec.name, sweep.storage.optuna_url).study
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.RUNNING, TrialState.FAIL) and missing_params(spec, t.params):
            continue  # asked, never given its parameters (the driver stopped inside the proposal): no configuration
        units = t.user_attrs.get(ATTR_UNITS, {})
        row = {"number": t.number, "state": t.state.name, "trial_id": t.user_attrs.get(ATTR_TUNE_TRIAL),
               "trial_ids": ([u["trial"] for u in units.values() if u.get("trial")] if units else
                             [t.user_attrs[ATTR_TUNE_TRIAL]] if ATTR_TUNE_TRIAL in t.user_attrs else []),
               "params": dict(t.params), "duplicate_of": t.user_attrs.get(ATTR_DUPLICATE_OF),
               "copy_of": t.user_attrs.get(ATTR_COPY_OF), "fail_reason": t.user_attrs.get(ATTR_FAIL_REASON)}
        complete = t.state == TrialState.COMPLETE
        row |= dict(zip(spec.objective_names, t.values if complete else [None] * len(spec.objective_names)))
        if spec.repeats > 1:
            seeds = [u["values"] for u in units.values() if u.get("values")]
            row |= {f"{n}_std": (float(np.std([v[i] for v in seeds], ddof=1)) if complete and len(seeds) > 1
                                 else None) for i, n in enumerate(spec.objective_names)}
        rows.append(row)
    return rows


def measured_rows(rows: list[dict]) -> list[dict]:
    """The measured configurations, each once: duplicates left out, a failed proposal that a resume completed
    replaced by its completed copy."""
    copied = {r["copy_of"] for r in rows if r["copy_of"] is not None}
    return [r for r in rows if r["duplicate_of"] is None and r["number"] not in copied]


def sweep_status(sweep: Sweep, rows: list[dict] | None = None, live: bool = True,
                 study: optuna.Study | None = None) -> dict:
    """Counts of measured configurations (complete, failed; a failure that is bookkeeping, marked stale, is none),
    duplicates and proposals; trials running and pending while a driver runs (its progress file); the front."""
    rows = trial_rows(sweep) if rows is None else rows
    measured = measured_rows(rows)
    failures = [r for r in measured if r["state"] == "FAIL" and not _stale(r)]
    progress = live_progress(sweep) if live else {}
    if study is None:
        study = load_study(sweep.spec.name, sweep.storage.optuna_url).study
    study_attrs = study.user_attrs
    return {"name": sweep.spec.name, "budget": sweep.spec.n_trials, "repeats": sweep.spec.repeats,
            "complete": sum(r["state"] == "COMPLETE" for r in measured), "failed": len(failures),
            "duplicates": sum(r["duplicate_of"] is not None for r in rows),
            "proposals": sum(r["copy_of"] is None and not _stale(r) for r in rows),
            "running": progress.get("running", 0), "pending": progress.get("pending", 0), "driver": bool(progress),
            "stop_reason": study_attrs.get(STOP_REASON), "workdir": str(sweep.storage.workdir),
            "failures": [{"number": r["number"], "reason": r["fail_reason"]} for r in failures],
            "front": front_rows(sweep, rows)}


def _stale(row: dict) -> bool:
    """A FAIL that is bookkeeping (the driver stopped before the trial was recorded), not a failed trial."""
    return row["state"] == "FAIL" and bookkeeping_failure(row["fail_reason"])


def live_progress(sweep: Sweep) -> dict:
    """The running driver's last progress (`progress.json`, rewritten every few seconds); {} if none is fresh."""
    path = sweep.storage.workdir / PROGRESS_FILE
    try:
        progress = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return progress if time.time() - progress.get("time", 0) < PROGRESS_STALE_S else {}


def front_rows(sweep: Sweep, rows: list[dict] | None = None) -> list[dict]:
    rows = [r for r in measured_rows(rows if rows is not None else trial_rows(sweep)) if r["state"] == "COMPLETE"]
    table = pareto.pareto_table(rows, sweep.spec.objectives)
    return [{**r, "configuration": configuration(sweep.spec, r["params"])} for r in table if r["pareto"]]


def pareto_report(sweep: Sweep, out_dir: str | Path | None = None, rows: list[dict] | None = None,
                  draw: bool = True) -> dict:
    """The non-dominated trials with configs and metrics, the hypervolume, and the plot files (2 objectives;
    `draw=False`: pareto.json only). `rows`: the study's rows if already read (`trial_rows`)."""
    spec = sweep.spec
    rows = [r for r in measured_rows(trial_rows(sweep) if rows is None else rows) if r["state"] == "COMPLETE"]
    names, modes = list(spec.objective_names), list(spec.objective_modes)
    points = np.array([[r[n] for n in names] for r in rows], dtype=float).reshape(len(rows), len(names))
    mask = pareto.non_dominated(points, modes) if rows else np.zeros(0, bool)
    report: dict[str, Any] = {"name": spec.name, "objectives": dict(spec.objectives), "complete": len(rows),
              "front": [{**r, "configuration": configuration(spec, r["params"])} for r, on in zip(rows, mask) if on],
              "hypervolume": None, "files": {}}
    if len(names) == 2:
        reference = pareto.default_reference(modes)
        report["hypervolume"] = pareto.hypervolume_2d(points, modes, reference) if rows else 0.0
        report["reference"] = reference.tolist()
    out = Path(out_dir) if out_dir else sweep.storage.workdir / "pareto"
    out.mkdir(parents=True, exist_ok=True)
    if draw and len(names) == 2 and rows:
        labels = [f"trial {r['number']} ({r['trial_id'] or ', '.join(r['trial_ids'])})" for r in rows]
        groups = [method_of(spec, r["params"]) for r in rows]  # colour by method (optimizer or defense)
        kwargs: dict[str, Any] = dict(names=names, mask=mask, labels=labels, groups=groups, title=f"{spec.name}: Pareto front")
        report["files"]["png"] = str(plots.plot_front_png(points, modes, out / "pareto.png", **kwargs))
        report["files"]["html"] = str(plots.plot_front_html(points, modes, out / "pareto.html",
                                                             details=[r["params"] for r in rows], **kwargs))
    report["files"]["json"] = str(out / "pareto.json")
    write_json_atomic(out / "pareto.json", report, default=str)
    return report
