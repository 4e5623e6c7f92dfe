"""A sweep on disk: its saved spec and storage, trial states, and the Pareto front (no Ray needed).

The Optuna study is the record of trials (each Tune trial ends as one finished Optuna trial); MLflow is
where people look, so the front is also written back there as `pareto=true` tags and parent-run artifacts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

from samprivacy.errors import ConfigError
from samprivacy.files import write_json_atomic
from samprivacy.spec import ResolvedStorage, SweepSpec, parse_spec
from samprivacy.report import pareto, plots
from samprivacy.sweep.search import ATTR_FAIL_REASON, ATTR_TUNE_TRIAL, load_study

SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class Sweep:
    spec: SweepSpec
    storage: ResolvedStorage

    @property
    def experiment_path(self) -> str:
        return f"{self.storage.tune_storage.rstrip('/')}/{self.spec.name}"

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


def trial_rows(sweep: Sweep) -> list[dict]:
    """One row per Optuna trial: number, state, Tune trial id, params, objective values, failure reason."""
    study = load_study(sweep.spec.name, sweep.storage.optuna_url)
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name, "trial_id": t.user_attrs.get(ATTR_TUNE_TRIAL),
               "params": dict(t.params), "fail_reason": t.user_attrs.get(ATTR_FAIL_REASON)}
        row |= dict(zip(sweep.spec.objective_names, t.values if t.state == TrialState.COMPLETE else
                        [None] * len(sweep.spec.objective_names)))
        rows.append(row)
    return rows


def sweep_status(sweep: Sweep) -> dict:
    """Counts per trial state. A FAIL that is bookkeeping (marked stale, or a trial later completed after a
    resume) is not a failed trial of the sweep."""
    rows = trial_rows(sweep)
    complete = {r["trial_id"] for r in rows if r["state"] == "COMPLETE"}
    failures = [r for r in rows if r["state"] == "FAIL" and r["trial_id"] not in complete
                and not (r["fail_reason"] or "").startswith("stale")]
    return {"name": sweep.spec.name, "budget": sweep.spec.n_trials, "complete": len(complete),
            "running": sum(r["state"] == "RUNNING" for r in rows), "failed": len(failures),
            "workdir": str(sweep.storage.workdir),
            "failures": [{"number": r["number"], "reason": r["fail_reason"]} for r in failures],
            "front": front_rows(sweep, rows)}


def front_rows(sweep: Sweep, rows: list[dict] | None = None) -> list[dict]:
    rows = [r for r in (rows if rows is not None else trial_rows(sweep)) if r["state"] == "COMPLETE"]
    table = pareto.pareto_table(rows, sweep.spec.objectives)
    return [r for r in table if r["pareto"]]


def pareto_report(sweep: Sweep, out_dir: str | Path | None = None) -> dict:
    """The non-dominated trials with configs and metrics, the hypervolume, and the plot files (2 objectives)."""
    spec = sweep.spec
    rows = [r for r in trial_rows(sweep) if r["state"] == "COMPLETE"]
    names, modes = list(spec.objective_names), list(spec.objective_modes)
    points = np.array([[r[n] for n in names] for r in rows], dtype=float).reshape(len(rows), len(names))
    mask = pareto.non_dominated(points, modes) if rows else np.zeros(0, bool)
    report = {"name": spec.name, "objectives": dict(spec.objectives), "complete": len(rows),
              "front": [r for r, on in zip(rows, mask) if on], "hypervolume": None, "files": {}}
    if len(names) == 2:
        reference = pareto.default_reference(modes)
        report["hypervolume"] = pareto.hypervolume_2d(points, modes, reference) if rows else 0.0
        report["reference"] = reference.tolist()
    out = Path(out_dir) if out_dir else sweep.storage.workdir / "pareto"
    out.mkdir(parents=True, exist_ok=True)
    if len(names) == 2 and rows:
        labels = [f"trial {r['number']} ({r['trial_id']})" for r in rows]
        groups = [r["params"].get("optimizer", next(iter(spec.optimizers))) for r in rows]  # colour by optimizer
        kwargs = dict(names=names, mask=mask, labels=labels, groups=groups, title=f"{spec.name}: Pareto front")
        report["files"]["png"] = str(plots.plot_front_png(points, modes, out / "pareto.png", **kwargs))
        report["files"]["html"] = str(plots.plot_front_html(points, modes, out / "pareto.html",
                                                             details=[r["params"] for r in rows], **kwargs))
    report["files"]["json"] = str(out / "pareto.json")
    write_json_atomic(out / "pareto.json", report, default=str)
    return report
