"""Overhead of the sweep service (Ray Tune + Optuna + MLflow) over the same trials run in a bare process pool.

    python benchmarks/bench_overhead.py [--trials 4] [--concurrency 2] [--trial-seconds 10] [--json PATH]

The same N trials (digits, SAM with N fixed rho values, a grid so the service runs exactly those configs) run
(a) in a bare loop: `ProcessPoolExecutor(C)` calling `pipeline.run_trial` with one torch thread per process, and
(b) through the service: `runner.run` with max_concurrent C and 1 CPU per trial; side by side in one run.
`--trial-seconds` sets the epochs from a short calibration (or give `--epochs`). Target (docs/performance.md): service wall
<= 1.05x bare wall for trials of about 10 s or more. Besides the ratio it measures where the rest goes: ray.init,
the driver before and after Tune, per-trial time outside a trial's own work (actor start, MLflow child run), and
per epoch (checkpoint snapshot, MLflow write, and the Tune report round trip, which is what remains).

To measure a modified copy of samprivacy, run this script from the copy's folder with PYTHONPATH pointing there:
Ray puts the driver's working directory first on every worker's sys.path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

import samprivacy
from samprivacy.pipeline import prepare, run_trial, train_config
from samprivacy.spec import TrialConfig, parse_spec
from samprivacy.sweep.space import config_from_params, grid_combos

TARGET = 1.05
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray on loopback only (read by ray.init)


def bench_spec(name: str, trials: int, concurrency: int, epochs: int, batch_size: int, attacks: list[str],
               workdir: Path):
    """A grid over `trials` SAM rho values: the service runs exactly these configurations, once each."""
    rhos = [round(0.02 * (i + 1), 4) for i in range(trials)]
    return parse_spec({
        "name": name, "datasets": ["digits"], "seeds": [0], "optimizers": {"sam": {"rho": {"choices": rhos}}},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": 0.05}, "attacks": attacks,
        "sampler": {"name": "grid", "seed": 0}, "trials": trials, "max_concurrent": concurrency,
        "resources": {"cpu": 1, "gpu": 0}, "max_failures": 0, "storage": {"workdir": str(workdir)}})


def trial_configs(spec) -> list[TrialConfig]:
    # What trial.trial_config builds on a worker: the spec's config plus the device (data_root is None here).
    return [config_from_params(spec, combo).model_copy(update={"device": "cpu"}) for combo in grid_combos(spec)]


def _one_thread() -> None:
    torch.set_num_threads(1)


def _bare_trial(config: TrialConfig) -> dict:
    start = time.time()
    result = run_trial(config)
    return {"seconds": result.seconds, "start": start, "end": time.time(), "epochs": len(result.training.history)}


def calibrate(config: TrialConfig, trial_seconds: float) -> tuple[int, dict]:
    """Epochs for a trial of about `trial_seconds` (one thread): fixed cost + epochs x per-epoch cost."""
    _one_thread()
    run_trial(config.model_copy(update={"epochs": 1}))  # warm-up (first-call costs)
    short, long = 5, 25
    t_short = run_trial(config.model_copy(update={"epochs": short})).seconds
    t_long = run_trial(config.model_copy(update={"epochs": long})).seconds
    per_epoch = max((t_long - t_short) / (long - short), 1e-4)
    fixed = max(t_short - short * per_epoch, 0.0)
    return max(1, round((trial_seconds - fixed) / per_epoch)), {"per_epoch_s": per_epoch, "fixed_s": fixed}


def run_bare(configs: list[TrialConfig], concurrency: int) -> dict:
    start = time.perf_counter()
    with ProcessPoolExecutor(concurrency, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
        trials = list(pool.map(_bare_trial, configs))
    wall = time.perf_counter() - start
    span = max(t["end"] for t in trials) - min(t["start"] for t in trials)
    return {"wall_s": wall, "trials": trials, "trial_mean_s": statistics.mean(t["seconds"] for t in trials),
            "outside_trials_s": wall - span}  # spawning the pool, imports, shutdown


class _Timed:
    """Wrap `owner.attr` to record how long each call takes (the code under test is not changed)."""

    def __init__(self, owner, attr: str):
        self.owner, self.attr, self.original, self.seconds, self.started = owner, attr, getattr(owner, attr), [], []

    def __enter__(self):
        def timed(*args, **kwargs):
            self.started.append(time.time())
            start = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds.append(time.perf_counter() - start)
        setattr(self.owner, self.attr, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.attr, self.original)
        return False


def _tune_trials(experiment: Path) -> list[dict]:
    """Each trial from Tune's result.json: epoch reports, run_trial seconds, Tune's time_total_s, actor pid."""
    trials = []
    for path in sorted(experiment.glob("*/result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        final = rows[-1]
        epochs = [r for r in rows if "epoch" in r and "test_acc" not in r]
        trials.append({"trial_id": final["trial_id"], "pid": final["pid"], "epoch_reports": len(epochs),
                       "seconds": final.get("seconds"), "tune_time_total_s": final["time_total_s"]})
    return trials


def _mlflow_windows(uri: str, experiment: str) -> dict[str, tuple[float, float]]:
    """trial id -> (start, end) of its MLflow child run in epoch seconds: the trial's window inside its actor."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`samprivacy.kind` = 'trial'", max_results=1000)
    return {r.data.tags["samprivacy.trial_id"]: (r.info.start_time / 1e3, r.info.end_time / 1e3) for r in runs}


def run_service(spec, concurrency: int) -> dict:
    import ray
    from ray import tune

    from samprivacy.sweep import runner

    start = time.perf_counter()
    runner.start_ray(None)
    ray_init = time.perf_counter() - start
    with _Timed(tune.Tuner, "fit") as fit, _Timed(runner, "finalize") as finalize:
        outcome = runner.run(spec)
    wall = time.perf_counter() - start
    sweep = runner.prepare(spec)
    trials = _tune_trials(Path(sweep.experiment_path))
    windows = _mlflow_windows(sweep.storage.mlflow_uri, spec.name)
    for t in trials:
        t["mlflow_window_s"] = windows[t["trial_id"]][1] - windows[t["trial_id"]][0]
    ray.shutdown()
    fit_s = fit.seconds[0]
    window_sum = sum(t["mlflow_window_s"] for t in trials)
    first_start = min(start for start, _ in windows.values())
    return {
        "wall_s": wall, "ray_init_s": ray_init, "fit_s": fit_s, "finalize_s": finalize.seconds[0],
        "before_fit_s": wall - ray_init - fit_s - finalize.seconds[0],
        "complete": outcome["status"]["complete"], "trials": trials,
        "trial_mean_s": statistics.mean(t["seconds"] for t in trials),
        "tune_time_total_mean_s": statistics.mean(t["tune_time_total_s"] for t in trials),
        "mlflow_window_mean_s": window_sum / len(trials),
        # Trial slots (C of them, for the whole of fit) not spent inside a trial's MLflow window: actor start,
        # imports, MLflow client/child-run setup, scheduling, and the tail where fewer than C trials are left.
        "slot_idle_per_trial_s": (concurrency * fit_s - window_sum) / len(trials),
        "distinct_actor_pids": len({t["pid"] for t in trials}),
        # From Tuner.fit() to the first trial's MLflow child run: actor start, imports, MLflow client setup.
        "first_trial_start_s": first_start - fit.started[0],
    }


def per_epoch_parts(config: TrialConfig, epochs: int = 12) -> dict:
    """In-process costs of what the service adds each epoch: the training-state snapshot + torch.save (Tune
    checkpoint), and one MLflow log_batch of the epoch row to SQLite. Medians over a few epochs."""
    from samprivacy.learn.train import train
    from samprivacy.sweep.tracking import Tracker

    _one_thread()
    snapshot, mlflow_write = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", "bench-parts", artifact_location=Path(tmp).as_uri())
        run_id = tracker.child_run("t0", tracker.parent_run(), params={})

        def on_epoch(row: dict, checkpoint) -> None:
            start = time.perf_counter()
            torch.save(checkpoint(), Path(tmp) / "train_state.pt")
            snapshot.append(time.perf_counter() - start)
            start = time.perf_counter()
            tracker.log_metrics(run_id, {k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
            mlflow_write.append(time.perf_counter() - start)

        dataset, model = prepare(config)
        train(model, dataset, train_config(config.model_copy(update={"epochs": epochs})), on_epoch=on_epoch)
    return {"snapshot_s": statistics.median(snapshot[1:]), "mlflow_write_s": statistics.median(mlflow_write[1:])}


def _print_repeat(bare: dict, service: dict, epochs: int) -> None:
    s = service
    added = (s["trial_mean_s"] - bare["trial_mean_s"]) / epochs
    print(f"  wall: bare {bare['wall_s']:.2f} s, service {s['wall_s']:.2f} s -> {s['wall_s'] / bare['wall_s']:.3f}x "
          f"({(s['wall_s'] - s['ray_init_s']) / bare['wall_s']:.3f}x with Ray already running)")
    print(f"  per trial, run_trial seconds: bare {bare['trial_mean_s']:.2f} s, service {s['trial_mean_s']:.2f} s "
          f"({added * 1e3:+.1f} ms per epoch); bare pool start-up and shutdown {bare['outside_trials_s']:.2f} s")
    print(f"  service: ray.init {s['ray_init_s']:.2f} s, before fit {s['before_fit_s']:.2f} s, fit {s['fit_s']:.2f} s,"
          f" finalize {s['finalize_s']:.2f} s; first trial started {s['first_trial_start_s']:.2f} s into fit; "
          f"slot idle {s['slot_idle_per_trial_s']:.2f} s per trial; {s['distinct_actor_pids']} actor processes, "
          f"{statistics.mean(t['epoch_reports'] for t in s['trials']):.0f} epoch reports per trial")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--trial-seconds", type=float, default=10.0, help="target length of one trial (one thread)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (overrides --trial-seconds)")
    parser.add_argument("--batch-size", type=int, default=64, help="larger batches: fewer, longer epochs")
    parser.add_argument("--attacks", default="loss,confidence,entropy")
    parser.add_argument("--repeats", type=int, default=1, help="bare and service alternate; the best walls count")
    parser.add_argument("--workdir", help="keep the service's state here (default: a temporary folder)")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    attacks = args.attacks.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.workdir or tmp)
        probe = trial_configs(bench_spec("probe", 1, 1, 1, args.batch_size, attacks, base / "probe"))[0]
        epochs, calibration = (args.epochs, {}) if args.epochs else calibrate(probe, args.trial_seconds)
        parts = per_epoch_parts(probe)
        print(f"{args.trials} trials (digits, sam, {epochs} epochs, batch {args.batch_size}), concurrency "
              f"{args.concurrency}, samprivacy from {Path(samprivacy.__file__).parent}")
        repeats = []
        for r in range(args.repeats):
            name = f"bench-overhead-{int(time.time())}-{r}"
            spec = bench_spec(name, args.trials, args.concurrency, epochs, args.batch_size, attacks, base / name)
            bare = run_bare(trial_configs(spec), args.concurrency)
            service = run_service(spec, args.concurrency)
            print(f"repeat {r + 1}/{args.repeats}")
            _print_repeat(bare, service, epochs)
            repeats.append({"bare": bare, "service": service, "ratio": service["wall_s"] / bare["wall_s"]})

    best_bare = min(repeats, key=lambda r: r["bare"]["wall_s"])["bare"]
    best_service = min(repeats, key=lambda r: r["service"]["wall_s"])["service"]
    ratio = best_service["wall_s"] / best_bare["wall_s"]
    ratio_ray_running = (best_service["wall_s"] - best_service["ray_init_s"]) / best_bare["wall_s"]
    added = (best_service["trial_mean_s"] - best_bare["trial_mean_s"]) / epochs
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "load_average": os.getloadavg()},
        "samprivacy": str(Path(samprivacy.__file__).parent),
        "trials": args.trials, "concurrency": args.concurrency, "epochs": epochs, "batch_size": args.batch_size,
        "attacks": attacks, "calibration": calibration, "repeats": repeats, "ratio": ratio,
        "ratio_ray_running": ratio_ray_running, "target": TARGET,
        "per_epoch": {**parts, "added_in_trial_s": added,
                      "report_round_trip_s": added - parts["snapshot_s"] - parts["mlflow_write_s"]},
    }
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"best walls: bare {best_bare['wall_s']:.2f} s, service {best_service['wall_s']:.2f} s -> {ratio:.3f}x "
          f"({ratio_ray_running:.3f}x with Ray already running); target <= {TARGET}x: {verdict}")
    pe = report["per_epoch"]
    print(f"per epoch the service adds {added * 1e3:.1f} ms: state snapshot + torch.save {pe['snapshot_s'] * 1e3:.1f}"
          f" ms, MLflow write {pe['mlflow_write_s'] * 1e3:.1f} ms, Tune report round trip and contention (the rest) "
          f"{pe['report_round_trip_s'] * 1e3:.1f} ms")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
