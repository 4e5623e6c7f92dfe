"""`samprivacy ...`: the command line. The only module that prints; everything else returns results."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from samprivacy.errors import SamprivacyError, TrainingDiverged
from samprivacy.files import write_json_atomic

if TYPE_CHECKING:
    from argparse import _SubParsersAction as Subparsers

    from samprivacy.spec.sweep import SweepSpec

console = Console(stderr=True)
out = Console()


def add_trial_parser(sub: Subparsers) -> None:
    from samprivacy.spec import TrialConfig
    from samprivacy.spec.flags import add_flags

    p = sub.add_parser("trial", help="train one model and attack it", description=(
        "Train one model with an optimizer of the sharpness-aware family, then run membership-inference "
        "attacks on it. Prints a summary; --json writes every metric. Every trial setting is a flag named after "
        "its field (docs/spec.md); nested ones are prefixed, e.g. --population-fraction."))
    add_flags(p, TrialConfig)
    p.add_argument("--references", help="folder of shared reference models (default: <out>/references, else "
                                        "./runs/references)")
    p.add_argument("--json", dest="json_path", help="write the full result as JSON to this path")
    p.add_argument("--out", help="folder for artifacts: summary.json, splits.npz, model.pt (population.npz with "
                                 "--population), roc.npz")
    p.set_defaults(handler=cmd_trial)


def cmd_trial(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from samprivacy.pipeline import run_trial
    from samprivacy.spec import TrialConfig, parse_trial_config
    from samprivacy.spec.flags import flag_values

    config: TrialConfig = parse_trial_config(flag_values(args, TrialConfig))
    references = args.references or str(Path(args.out or "runs") / "references")
    models = config.population.models if config.population else 1
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task(f"{config.method} on {config.dataset}", total=config.epochs * models, status="")

        def on_epoch(row: dict, _checkpoint: Callable[[], dict]) -> None:
            which = f"model {row['model'] + 1}/{models}  " if "model" in row else ""
            progress.update(task, completed=row.get("step", row["epoch"]),
                            status=f"{which}loss {row['train_loss']:.3f}  val acc {row['val_acc']:.3f}")

        result = run_trial(config, on_epoch=on_epoch, references=references)
    summary = result.summary()
    if args.out:
        result.save(args.out)
    if args.json_path:
        write_json_atomic(args.json_path, summary)
    print_trial_summary(summary)
    return 0


def print_trial_summary(summary: dict) -> None:
    cfg, pop = summary["config"], summary.get("population")
    method = summary.get("method", cfg["optimizer"])
    out.print(f"[bold]{method}[/] on [bold]{cfg['dataset']}[/]  seed {cfg['seed']}  "
              f"best epoch {summary['best_epoch']}  ({summary['seconds']:.1f} s on {summary['device']})"
              + (f"  population of {pop['models']} models, pool {pop['pool']}" if pop else ""))
    if summary.get("epsilon") is not None:
        out.print(f"DP: epsilon {summary['epsilon']:.3f} at delta {summary['delta']:.3g} (noise multiplier "
                  f"{summary['noise_multiplier']:.3f}, Opacus's RDP accountant)")
    if cfg.get("defense") == "memguard":
        out.print("MemGuard: every attack saw defended confidence vectors; labels are unchanged, so label-only "
                  "attacks see the undefended model by design")
    test = f"{summary['test_acc']:.4f}" + (f" ± {summary['test_acc_std']:.4f}" if pop else "")
    out.print(f"train acc {summary['train_acc']:.4f}   val acc {summary['val_acc']:.4f}   "
              f"[bold]test acc {test}[/]   "
              f"[bold]attack acc {summary['attack_acc']:.4f}[/] ({summary['best_attack']})")
    keys = ("accuracy", "auc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "advantage")
    table = Table("attack", "accuracy", "AUC", "TPR@0.1%FPR", "TPR@1%FPR", "advantage",
                  caption="mean ± std over the population's targets (lira, rmia: AUC and TPRs pooled over targets, "
                          "see below); - : too few non-members for that FPR" if pop else None)
    spread = summary.get("attacks_std", {})

    def cell(name: str, key: str, m: dict) -> str:
        if m[key] is None:
            return "-"
        std = spread.get(name, {}).get(key)
        return f"{m[key]:.4f}" + (f"±{std:.3f}".replace("±0.", "±.") if std is not None else "")

    for name, m in sorted(summary["attacks"].items(), key=lambda kv: -kv[1]["accuracy"]):
        table.add_row(name, *(cell(name, k, m) for k in keys))
    out.print(table)
    _print_low_fpr(summary)
    if pop and summary.get("conf_var_out") is not None:
        out.print(f"confidence variance on unseen examples: {summary['conf_var_out']:.4f} (pool, OUT models), "
                  f"{summary['conf_var_test']:.4f} (held-out test set)")


def _print_low_fpr(summary: dict) -> None:
    """Every population attack's TPR at low FPR: pooled over targets with its 95% interval and negatives, and
    the per-target mean beside it."""
    from samprivacy.catalog import LOW_FPRS, POPULATION_ATTACKS

    strong = [a for a in POPULATION_ATTACKS if f"{a}_auc" in summary]
    if not strong:
        return
    table = Table("attack", *(h for f in LOW_FPRS for h in (f"TPR@{f:.1%}FPR pooled [95% CI]", "non-members",
                                                              "per target")),
                  caption="pooled: one ROC over every target's own members and non-members (the primary figure); "
                          "interval: bootstrap over examples")
    for attack in strong:
        row = [attack]
        for f in LOW_FPRS:
            m = f"{attack}_tpr_at_fpr_{f}"
            value, low, high = summary[m], summary[f"{m}_ci_low"], summary[f"{m}_ci_high"]
            row.append("missing" if value is None else f"{value:.4f} [{low:.4f}, {high:.4f}]")
            row.append(f"{summary[f'{m}_negatives']:,}")
            per_target = summary[f"{m}_per_target"]
            row.append("missing" if per_target is None else f"{per_target:.4f}")
        table.add_row(*row)
    out.print(table)
    for metric, reason in summary.get("missing", {}).items():
        out.print(f"[dim]{metric} missing: {reason}[/]")
    for warning in summary.get("warnings", []):
        out.print(f"[yellow]warning:[/] {warning}")


def add_sweep_parsers(sub: Subparsers) -> None:
    p = sub.add_parser("validate", help="check a sweep spec and report every problem")
    p.add_argument("spec", help="path to a sweep spec (YAML)")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("run", help="run a sweep: Ray Tune trials, Optuna Pareto search, MLflow tracking")
    p.add_argument("spec", help="path to a sweep spec (YAML), e.g. sweeps/quickstart.yaml")
    p.add_argument("--workdir", help="where the sweep's state lives (default: the spec's, else ./runs/<name>)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto, or ray://head:10001)")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("resume", help="continue an interrupted sweep; finished trials never re-run")
    p.add_argument("name", help="the sweep's name")
    p.add_argument("--workdir", help="the folder it ran in (default ./runs/<name>)")
    p.add_argument("--address", help="join an existing Ray cluster")
    p.set_defaults(handler=cmd_resume)

    p = sub.add_parser("status", help="trials done, running, failed; the current Pareto front")
    p.add_argument("name")
    p.add_argument("--workdir")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("report", help="Table 1 (mean ± std over seeds) and Table 2 (change against SGD), "
                                      "read from the sweep's MLflow runs")
    p.add_argument("name")
    p.add_argument("--workdir", help="the folder it ran in (default ./runs/<name>)")
    p.add_argument("--table", choices=("1", "2"), help="only this table (default: both)")
    p.add_argument("--format", default="md", choices=("md", "csv", "latex"), help="default md")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("dashboard", help="optuna-dashboard on the sweep's Optuna study (loopback by default)")
    p.add_argument("name")
    p.add_argument("--workdir", help="the folder it ran in (default ./runs/<name>)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on; 0.0.0.0 exposes it (no login)")
    p.set_defaults(handler=cmd_dashboard)

    p = sub.add_parser("pareto", help="the non-dominated trials, hypervolume and plot files")
    p.add_argument("name")
    p.add_argument("--workdir")
    p.add_argument("--out", help="folder for pareto.png / pareto.html / pareto.json (default <workdir>/pareto)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(handler=cmd_pareto)


def cmd_validate(args: argparse.Namespace) -> int:
    from samprivacy.spec import load_spec

    spec = load_spec(args.spec)
    out.print(f"[green]ok[/] {args.spec}: sweep '{spec.name}', {spec.n_trials} trials, objectives "
              + ", ".join(f"{k} ({v})" for k, v in spec.objectives.items()))
    size = spec.grid_size()
    if size is not None and size < spec.n_trials:  # only with a sampler other than grid (grid checks trials)
        out.print(f"[yellow]note:[/] the search space holds {size} distinct configurations: the sweep ends once "
                  f"they are measured, before trials ({spec.n_trials})")
    _print_reach(spec)
    from samprivacy.spec.defenses import cost_notes

    for note in cost_notes(spec):
        out.print(f"[yellow]cost:[/] {note}")
    return 0


def _print_reach(spec: SweepSpec) -> None:
    """The population's pool and the non-members behind each low-FPR figure; a warning per objective it cannot
    reach. Needs the data: a dataset that cannot be loaded here gets a note, not a failure."""
    from samprivacy.pipeline.reach import sweep_reach

    try:
        infos, warnings = sweep_reach(spec)
    except SamprivacyError as e:
        out.print(f"[yellow]note:[/] cannot size the population's pool here ({e})")
        return
    for info in infos:
        if "pool" in info:
            out.print(f"{info['dataset']}: population pool of {info['pool']:,} examples ({info['pool_protocol']}), "
                      f"{info['models']} models: {info['negatives_per_target']:,} non-members per target, "
                      f"{info['negatives_pooled']:,} pooled over targets")
    for warning in warnings:
        out.print(f"[yellow]warning:[/] {warning}")


def _progress_printer(total: int) -> tuple[Any, Callable[[dict], None]]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]trials"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
    task = progress.add_task("sweep", total=total, status="")
    shown = set()

    def update(status: dict) -> None:
        if status.get("note") and status["note"] not in shown:  # e.g. waiting for an autoscaler: say it once
            shown.add(status["note"])
            progress.console.print(f"[yellow]note:[/] {escape(status['note'])}")
        progress.update(task, completed=status["complete"] + status["failed"], status=_counts(status))
    return progress, update


def _counts(status: dict) -> str:
    """running / pending (Tune trials: one per seed), failed and duplicate proposals, the front's size."""
    front = status["front_size"] if "front_size" in status else len(status["front"])
    return (f"running {status['running']}  pending {status['pending']}  failed {status['failed']}  "
            f"duplicates {status['duplicates']}  front {front}")


def _print_sweep_outcome(outcome: dict) -> None:
    status, report = outcome["status"], outcome["pareto"]
    out.print(f"sweep [bold]{status['name']}[/]: {status['complete']} complete, {status['failed']} failed "
              f"(budget {status['budget']}); {status['duplicates']} of {status['proposals']} proposals repeated a "
              f"configuration already measured (reused, not trained)")
    if status.get("stop_reason"):
        out.print(f"[yellow]ended early:[/] {escape(status['stop_reason'])}")
    _print_front(report, files=False)  # the plots people read are the report's (configuration means)
    # paths, addresses and commands to copy: whole on their lines (soft_wrap: the terminal wraps for the eye)
    uri, workdir = outcome["mlflow_uri"], status["workdir"]
    lines = [f"MLflow: summary run {outcome['parent_run_id']} in experiment {outcome['experiment_id']} at {uri}"]
    if outcome.get("report_dir"):
        lines.append(f"plots, front and Table 1/2: {outcome['report_dir']}   (tables: samprivacy report {status['name']})")
    if uri.startswith(("http://", "https://")):
        lines.append(f"open the sweep in MLflow:  {uri.rstrip('/')}/{outcome['ui_path']}")
    else:
        lines.append(f"open the UI:  samprivacy ui --workdir {workdir}   (it prints the sweep's address; the front is "
                     f"in the experiment's description, one click on its expand button)")
    for line in lines:
        out.print(escape(line), soft_wrap=True)


def front_configuration(row: dict) -> tuple[str, str]:
    """(method, its settings one per line) of a front row: its `configuration` (sweep.space.configuration: fixed
    settings included) or else its Optuna params, `method` / `optimizer` named once and a method's own parameters
    without their `<method>.` prefix, so nothing needs cutting at 80 columns."""
    if "configuration" in row:
        method, params = row["configuration"]["method"], row["configuration"]["settings"]
    else:
        params = row["params"]
        method = str(params.get("method", params.get("optimizer", "")))
    settings = []
    for key, value in params.items():
        if key in ("method", "optimizer"):
            continue
        name = key.split(".", 1)[1] if key.startswith(f"{method}.") else key
        settings.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
    return method or "-", "\n".join(settings) or "-"


def front_table(report: dict) -> Table:
    """The printed front (run, status, pareto): the Optuna trial number, the configuration in full, the objectives.
    Tune's trial ids are left to --json and MLflow: three of them per row took an 80-column terminal's width."""
    objectives = list(report["objectives"])
    table = Table("#", "method", "settings", *objectives, title="Pareto front")
    for column in table.columns:
        column.overflow = "fold"  # a long name wraps onto the next line, never ends in "..."
    for row in sorted(report["front"], key=lambda r: r["number"]):
        values = [f"{row[o]:.4f}" + (f"\n± {row[o + '_std']:.4f}" if row.get(o + "_std") is not None else "")
                  for o in objectives]
        table.add_row(str(row["number"]), *front_configuration(row), *values)
    return table


def _print_front(report: dict, files: bool = True) -> None:
    out.print(front_table(report))
    if report.get("hypervolume") is not None:
        out.print(f"hypervolume {report['hypervolume']:.4f} (reference {report.get('reference')})")
    for kind, path in report.get("files", {}).items() if files else ():
        out.print(escape(f"{kind}: {path}"), soft_wrap=True)  # a path to copy: whole on its line


def _run_with_progress(total: int, call: Callable[[Callable[[dict], None]], dict]) -> dict:
    progress, update = _progress_printer(total)
    with progress:
        return call(update)


def cmd_run(args: argparse.Namespace) -> int:
    from samprivacy.spec import load_spec
    from samprivacy.sweep.cluster import join_cluster

    spec = load_spec(args.spec)  # validated before anything starts
    join_cluster(spec.resources, args.address)  # a trial no node can hold: refused before the heavy imports
    from samprivacy.sweep import runner

    outcome = _run_with_progress(spec.n_trials, lambda update: runner.run(
        spec, workdir=args.workdir, address=args.address, spec_file=args.spec, on_progress=update))
    _print_sweep_outcome(outcome)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from samprivacy.sweep.cluster import join_cluster
    from samprivacy.sweep.results import open_sweep

    spec = open_sweep(args.name, args.workdir).spec
    join_cluster(spec.resources, args.address)
    from samprivacy.sweep import runner

    total = spec.n_trials
    outcome = _run_with_progress(total, lambda update: runner.resume(
        args.name, workdir=args.workdir, address=args.address, on_progress=update))
    _print_sweep_outcome(outcome)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from samprivacy.sweep.results import open_sweep, sweep_status

    sweep = open_sweep(args.name, args.workdir)
    status = sweep_status(sweep)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    out.print(f"sweep [bold]{status['name']}[/] in {escape(str(status['workdir']))}: {status['complete']}/"
              f"{status['budget']} complete  {_counts(status)}  ({status['proposals']} proposals)", soft_wrap=True)
    if not status["driver"]:
        out.print("no driver is running it now (resume it with  samprivacy resume NAME  if it stopped early)"
                  if status["complete"] + status["failed"] < status["budget"] and not status["stop_reason"] else
                  "finished")
    if status.get("stop_reason"):
        out.print(f"[yellow]ended early:[/] {escape(status['stop_reason'])}")
    for failure in status["failures"]:
        out.print(f"  trial {failure['number']} failed: {failure['reason']}")
    _print_front({"objectives": sweep.spec.objectives, "front": status["front"]})
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from samprivacy.sweep.results import open_sweep, pareto_report

    report = pareto_report(open_sweep(args.name, args.workdir), args.out)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_front(report)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from samprivacy.report import tables
    from samprivacy.report.runs import load_results
    from samprivacy.sweep.results import open_sweep

    sweep = open_sweep(args.name, args.workdir)
    results = load_results(sweep.storage.mlflow_uri, sweep.spec.name, sweep.spec.objectives)
    chosen = [tables.table1, tables.table2] if args.table is None else [(tables.table1, tables.table2)[int(args.table) - 1]]
    texts = [tables.render(make(results.configs), args.format) for make in chosen]
    print("\n".join(texts), end="")  # plain stdout: pipes into files and other tools
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from samprivacy.ops.dashboard import dashboard_command
    from samprivacy.sweep.results import open_sweep
    from samprivacy.sweep.study import load_study

    sweep = open_sweep(args.name, args.workdir)
    study = load_study(sweep.spec.name, sweep.storage.optuna_url)
    command = dashboard_command(sweep.storage.optuna_url, study.study_id, host=args.host, port=args.port)
    out.print(f"optuna-dashboard for study {escape(sweep.spec.name)}: [bold]{command.url}[/]  (Ctrl-C stops it)")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] listening on {args.host}: anyone who can reach it can edit the study "
                      "(optuna-dashboard has no login)")
    return _serve(command.argv)


def _serve(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run a server in the foreground until it exits or Ctrl-C stops it."""
    import subprocess

    process = subprocess.Popen(argv, env={**os.environ, **(env or {})})
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait(timeout=30)
        raise


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_cluster_parsers(sub: Subparsers) -> None:
    p = sub.add_parser("submit", help="run a sweep on a Ray cluster as a Ray job", description=(
        "Validate the spec here, then submit `samprivacy run` on it through Ray's Job Submission API. Prints the "
        "job id; --follow streams the job's output and exits 1 unless the job succeeds. Token auth: set "
        "RAY_AUTH_MODE=token with the cluster's token in ~/.ray/auth_token (or RAY_AUTH_TOKEN_PATH). "
        "docs/cluster.md has the whole setup."))
    p.add_argument("spec", help="path to a sweep spec (YAML); only this file is sent to the cluster")
    p.add_argument("--address", help="the Ray dashboard, e.g. http://head:8265 (default: RAY_API_SERVER_ADDRESS, "
                                     "else http://127.0.0.1:8265)")
    p.add_argument("--workdir", help="where the sweep's state goes, as the cluster sees it (a shared path on a "
                                     "multi-node cluster); default: the spec's, else ./runs/<name>, made absolute")
    p.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")
    p.add_argument("--python", default="python", help="the cluster's Python with samprivacy installed "
                                                      "(default: `python` on the cluster's PATH)")
    p.add_argument("--env", action="append", type=_env_pair, default=[], metavar="KEY=VALUE",
                   help="an environment variable for the job's driver and trials (repeatable)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the short job that checks the cluster's Python imports this samprivacy version")
    p.set_defaults(handler=cmd_submit)

    p = sub.add_parser("ui", help="the MLflow UI on a sweep's local store (loopback by default)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--workdir", help="the folder the sweep ran in")
    where.add_argument("--name", help="the sweep's name, for ./runs/NAME")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on; 0.0.0.0 exposes the UI (no login)")
    p.set_defaults(handler=cmd_ui)


def cmd_submit(args: argparse.Namespace) -> int:

    from samprivacy.ops import submit

    job_id = submit.submit_sweep(args.spec, args.address, workdir=args.workdir, extra_env=dict(args.env),
                                 python=args.python, check=args.check)
    address = submit.dashboard_address(args.address)
    print(job_id, flush=True)  # alone on stdout, so scripts can capture it
    if not args.follow:
        console.print(f"follow it with  ray job logs --follow {job_id} --address {address}")
        return 0
    try:
        for chunk in submit.follow_logs(address, job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        console.print(f"stopped following; the job goes on (stop it with  ray job stop {job_id} --address {address})")
        raise
    report = submit.wait_for_job(address, job_id)
    colour = "green" if report.succeeded else "red"
    console.print(f"job {job_id}: [{colour}]{report.status}[/]" + (f" ({escape(report.message)})" if report.message
                                                                    and not report.succeeded else ""))
    return 0 if report.succeeded else 1


def cmd_ui(args: argparse.Namespace) -> int:
    from samprivacy.ops.ui import experiment_url, ui_command

    command = ui_command(args.workdir, args.name, host=args.host, port=args.port)
    out.print(f"MLflow UI for {escape(str(command.workdir))}: [bold]{command.url}[/]  (Ctrl-C stops it)",
              soft_wrap=True)  # the address whole, to open
    sweep_page = experiment_url(command, args.name)
    if sweep_page:
        out.print(f"the sweep's trials and Pareto front: [bold]{escape(sweep_page)}[/]", soft_wrap=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] listening on {args.host}: anyone who can reach it can read and write "
                      "the runs (MLflow's UI has no login)")
    return _serve(command.argv, command.env)


def add_analysis_parsers(sub: Subparsers) -> None:
    p = sub.add_parser("memorization", help="memorization and influence from each optimizer's population",
                       description=(
        "Train the spec's population once per optimizer (one Ray job, populations in parallel; resumable), then "
        "compare the optimizers on influence-entropy buckets fixed from the reference optimizer's population: "
        "test accuracy per bucket with standard errors, memorization scores (Feldman & Zhang), the variance of "
        "the confidence on unseen examples. Logs arrays, tables and plots to the sweep's MLflow experiment."))
    p.add_argument("spec", help="a sweep spec with `population`, one dataset, one seed and fixed parameters, e.g. "
                                "sweeps/memorization-longtail.yaml")
    p.add_argument("--workdir", help="where the populations are kept (default: the spec's, else ./runs/<name>)")
    p.add_argument("--reference", help="the optimizer whose population fixes the buckets (default: sgd)")
    p.add_argument("--significance", type=float, default=0.0,
                   help="count influences within this many standard errors of zero as zero (default 0: none)")
    p.add_argument("--json", dest="json_path", help="write the report as JSON to this path")
    p.set_defaults(handler=cmd_memorization)

    p = sub.add_parser("catalog", help="every optimizer, dataset, model, attack and objective metric")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(handler=cmd_catalog)


def cmd_memorization(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from samprivacy.spec import load_spec
    from samprivacy.memorization import optimizer_configs, run_memorization

    spec = load_spec(args.spec)
    configs = optimizer_configs(spec)  # refused here, before Ray starts, if the spec cannot serve
    total = len(configs) * (spec.population.models if spec.population else 0)
    with Progress(TextColumn("[bold]models"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("memorization", total=total)
        outcome = run_memorization(spec, workdir=args.workdir, reference=args.reference,
                                   significance=args.significance,
                                   on_progress=lambda s: progress.update(task, completed=total - s["total"]
                                                                         + s["done"]))
    if args.json_path:
        write_json_atomic(args.json_path, outcome.document)
    doc = outcome.document
    titles = {"buckets": f"{doc['name']}: test accuracy ± s.e. per influence-entropy bucket (1 = lowest entropy; "
                         f"buckets from {doc['reference']}'s population)",
              "summary": f"{doc['models']} models per optimizer on {doc['dataset']}"}
    for name, rows in outcome.tables.items():
        table = Table(*rows[0], title=titles[name])
        for row in rows:
            table.add_row(*(escape(str(v)) for v in row.values()))
        out.print(table)
    for note in doc.get("notes", []):
        out.print(f"[yellow]note:[/] {note}")
    for name, o in doc["optimizers"].items():
        if o["singleton_auc"] is not None:
            out.print(f"{name}: memorization ranks the planted singletons with AUC {o['singleton_auc']:.3f}")
    for kind, path in outcome.files.items():
        out.print(escape(f"{kind}: {path}"), soft_wrap=True)  # a path to copy: whole on its line
    out.print(escape(f"MLflow: run {outcome.run_id} at {outcome.mlflow_uri}"), soft_wrap=True)  # whole, to copy
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from samprivacy import catalog

    if args.json:
        print(json.dumps({
            "optimizers": {n: {"params": e.params, "summary": e.summary} for n, e in catalog.OPTIMIZERS.items()},
            "defenses": {**{n: {"params": e.params, "optimizers": e.optimizers, "cost": e.cost, "summary": e.summary}
                            for n, e in catalog.DEFENSES.items()},
                         **{n: {"sets": sets, "summary": "a training option as a method of its own"}
                            for n, sets in catalog.TRAINING_DEFENSES.items()}},
            "datasets": {n: e.summary for n, e in catalog.DATASETS.items()},
            "models": {n: e.summary for n, e in catalog.MODELS.items()},
            "attacks": {n: {"kind": e.kind, "summary": e.summary} for n, e in catalog.ATTACKS.items()},
            "objectives": list(catalog.objective_metrics())}, indent=2))
        return 0
    for title, rows in (
            ("optimizers", [(n, ", ".join(e.params) or "-", e.summary) for n, e in catalog.OPTIMIZERS.items()]),
            ("defenses", [(n, ", ".join(e.params), f"{e.summary}. With: {', '.join(e.optimizers)}. Cost: {e.cost}")
                          for n, e in catalog.DEFENSES.items()]
             + [("label_smoothing", "label_smoothing", "label smoothing (any optimizer or defense; as a method: "
                                                       "defenses.label_smoothing)"),
                ("last_epoch", "selection", "the last epoch's weights instead of early stopping on the validation "
                                            "split (as a method: defenses.last_epoch)")]),
            ("attacks", [(n, e.kind, e.summary) for n, e in catalog.ATTACKS.items()]),
            ("datasets", [(n, "", e.summary) for n, e in catalog.DATASETS.items()]),
            ("models", [(n, e.input, e.summary) for n, e in catalog.MODELS.items()])):
        table = Table("name", "", "", title=title, show_header=False)
        for row in rows:
            table.add_row(*row)
        out.print(table)
    out.print("objectives: " + ", ".join(catalog.objective_metrics()))
    return 0


PARSERS: list[Callable] = [add_trial_parser, add_sweep_parsers, add_cluster_parsers, add_analysis_parsers]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samprivacy", description=__doc__.split("\n")[0].strip("`"))
    sub = parser.add_subparsers(dest="command", required=True)
    for add in PARSERS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SamprivacyError as exc:
        return _say_error(str(exc), 2)
    except TrainingDiverged as exc:
        return _say_error(str(exc), 3)
    except OSError as exc:  # e.g. --json names a directory, or a folder we may not write to
        where = exc.filename2 or exc.filename  # os.replace(tmp, path): filename2 is the path the user gave
        return _say_error(f"{exc.strerror}: {where}" if where and exc.strerror else str(exc), 2)
    except KeyboardInterrupt as exc:
        return _say_error(str(exc) or "interrupted", 130, "[yellow]{}[/]")


def _say_error(message: str, code: int, form: str = "[red]error:[/] {}") -> int:
    """One message on stderr, returning the exit code. Not markup (messages hold paths like [/tmp/x]), and not
    wrapped by us: a message often ends in a command to copy (`samprivacy resume NAME --workdir PATH`), which
    line breaks at the console's width would cut in two; the terminal wraps it for the eye only."""
    console.print(form.format(escape(message)), soft_wrap=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
