"""Fixed cost of the sweep service, per trial and per sweep: trivial trials through Ray Tune + Optuna + MLflow
against the same trials in a bare process pool, side by side in one run.

    python benchmarks/bench_overhead.py [--trials 1000] [--concurrency 2] [--trial-seconds 0] [--json PATH]
    python benchmarks/bench_overhead.py --trials 10000      # also prints the first and the last thousand

A trivial trial (tests/support/trivial.py) trains nothing; its work is `--trial-seconds` of sleep, the same on
both sides. The service gets a running Ray (Ray's own start is reported apart: on a cluster it is already up), a
random sampler over a continuous learning rate (no duplicates), SQLite MLflow and Optuna in a temporary workdir,
`max_concurrent` C and 1 CPU per trial. The bare loop is a ProcessPoolExecutor(C) calling the same function.

Reported for each side, from the times trials end in their workers (the end of the service's MLflow trial run):
  per trial   C x (last completion - first completion) / (N - 1) - the trial's own work: slot seconds a trial
              costs beyond its work. The service's fixed cost per trial is its figure minus the bare loop's.
  per sweep   start: from the call to the first completion; finish: from the last completion to the return
  thousands   seconds each thousand completions took, and the driver's memory (RSS) when each ended
  start, in parts  the dataset preflight, the MLflow store, when Tune begins, when the first trial starts
Timings on a shared machine are noisy: read the two sides of one run against each other. The targets: <= 0.15 s
fixed cost per trial (1,000 trials, concurrency 2), start <= 3 s (to the first trial's start), finish <= 5 s at
10,000 trials, last thousand <= 1.1x the first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
import sys
from pathlib import Path

# The trivial trial is test support, not part of the installed package: import it (and let Ray's workers import
# it) from the repository root.
ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)

from tests.support.trivial import TRIVIAL, run_trial  # noqa: E402  light: what the bare loop's processes import too

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray on loopback only (read by ray.init)
TARGET_PER_TRIAL_S, TARGET_START_S, TARGET_FINISH_S, TARGET_GROWTH = 0.15, 3.0, 5.0, 1.1


def bench_spec(name: str, trials: int, concurrency: int, workdir: Path):
    from samprivacy.spec import parse_spec

    return parse_spec({
        "name": name, "optimizers": {"sgd": {}}, "train": {"epochs": 1, "lr": {"low": 0.001, "high": 0.5}},
        "attacks": ["loss"], "sampler": {"name": "random", "seed": 0}, "trials": trials,
        "max_concurrent": concurrency, "resources": {"cpu": 1, "gpu": 0}, "max_failures": 0,
        "storage": {"workdir": str(workdir)}})


def _bare_trial(config) -> float:
    run_trial(config)
    return time.time()


def run_bare(spec, concurrency: int) -> dict:
    from samprivacy.sweep.space import config_from_params

    configs = [config_from_params(spec, {"lr": 0.001 + i * 1e-6}) for i in range(spec.n_trials)]
    start = time.time()
    with ProcessPoolExecutor(concurrency, mp_context=get_context("spawn")) as pool:
        done = sorted(pool.map(_bare_trial, configs, chunksize=1))
    return {"start": start, "end": time.time(), "completions": done}


class _Sampler:
    """Every half second: the driver's resident memory, and the CPU seconds used so far by the driver and every
    process below it (Ray's daemons and workers when Ray was started here), read from /proc (Linux)."""

    def __init__(self):
        self.samples, self._cpu, self._stop = [], {}, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(0.5):
            stats = {}
            for entry in os.listdir("/proc"):
                try:
                    text = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
                except OSError:
                    continue
                if text:
                    fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) "
                    stats[int(entry)] = (int(fields[1]), fields[19], (int(fields[11]) + int(fields[12])) / tick)
            tree, grew = {os.getpid()}, True
            while grew:
                below = {pid for pid, (ppid, _, _) in stats.items() if ppid in tree} - tree
                tree |= below
                grew = bool(below)
            for pid in tree:  # keyed by (pid, start time): a reused pid is another process
                self._cpu[(pid, stats[pid][1])] = stats[pid][2]
            rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            self.samples.append((time.time(), rss, sum(self._cpu.values())))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def at(self, moment: float) -> tuple[float, float] | None:
        """(RSS MiB, CPU seconds so far) at the last sample before `moment`."""
        before = [(rss, cpu) for t, rss, cpu in self.samples if t <= moment]
        return before[-1] if before else None


class _Clock:
    """Record when `owner.attr` is first called and how long its calls take (the code under test unchanged)."""

    def __init__(self, owner, attr: str):
        self.owner, self.attr, self.original, self.first, self.seconds = owner, attr, getattr(owner, attr), None, 0.0

    def __enter__(self):
        def timed(*args, **kwargs):
            self.first = self.first or time.time()
            start = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        setattr(self.owner, self.attr, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.owner, self.attr, self.original)


def run_service(spec) -> dict:
    from mlflow.tracking import MlflowClient
    from ray import tune

    from samprivacy.sweep import runner

    with _Sampler() as sampler, _Clock(runner, "preflight") as preflight, _Clock(runner, "_tracker") as stores, \
            _Clock(tune.Tuner, "fit") as fit:
        start = time.time()
        outcome = runner.run(spec, work=TRIVIAL)
        end = time.time()
    # A trial ends when its worker finishes its MLflow run (Optuna hears later, see sweep/search.py).
    client = MlflowClient(runner.prepare(spec).storage.mlflow_uri)
    experiment = client.get_experiment_by_name(spec.name).experiment_id
    done, token = [], None
    while True:
        page = client.search_runs([experiment], "tags.`samprivacy.kind` = 'trial'", max_results=1000, page_token=token)
        done += [r.info.end_time / 1e3 for r in page if r.info.end_time]
        if not (token := page.token):
            break
    starts = sorted(float(line) for line in Path(os.environ["SAMPRIVACY_TRIVIAL_STARTS"]).read_text().split())
    return {"start": start, "end": end, "completions": sorted(done), "complete": outcome["status"]["complete"],
            "first_trial_at_s": starts[0] - start, "sampler": sampler, "preflight_s": preflight.seconds, "mlflow_store_s": stores.seconds,
            "first_fit_at_s": fit.first - start}


def summarise(side: dict, concurrency: int, work_s: float) -> dict:
    done = side["completions"]
    n = len(done)
    summary = {"trials": n, "wall_s": side["end"] - side["start"],
               "per_trial_slot_s": concurrency * (done[-1] - done[0]) / max(n - 1, 1) - work_s,
               "start_s": done[0] - side["start"], "finish_s": side["end"] - done[-1]}
    if "first_fit_at_s" in side:  # the start, in parts: the driver's own set-up, then Tune to the first trial's end
        summary |= {k: side[k] for k in ("preflight_s", "mlflow_store_s", "first_fit_at_s", "first_trial_at_s")}
        first, last = side["sampler"].at(done[0]), side["sampler"].at(done[-1])
        if first and last:  # CPU of the driver, Ray's daemons and workers per trial: less sensitive to other load
            summary["cpu_per_trial_s"] = (last[1] - first[1]) / max(n - 1, 1)
    if n >= 2000:
        marks = list(range(0, n, 1000))
        thousands = [done[min(m + 999, n - 1)] - done[m] for m in marks]
        summary["thousands_s"] = thousands
        # noise-resistant growth: the least-squares line through the thousands, its last value over its first
        k = len(thousands)
        mean_x, mean_y = (k - 1) / 2, sum(thousands) / k
        slope = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(thousands)) / sum((i - mean_x) ** 2
                                                                                         for i in range(k))
        summary["fitted_growth"] = (mean_y + slope * (k - 1 - mean_x)) / (mean_y - slope * mean_x)
        if "sampler" in side:
            at = [side["sampler"].at(done[min(m + 999, n - 1)]) for m in marks]
            summary["rss_mib"] = [a[0] if a else None for a in at]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--trial-seconds", type=float, default=0.0, help="each trivial trial's work (sleep)")
    parser.add_argument("--skip-bare", action="store_true", help="only the service (e.g. a second 10,000 run)")
    parser.add_argument("--workdir", help="keep the service's state here (default: a temporary folder)")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    os.environ["SAMPRIVACY_TRIVIAL_EPOCH_S"] = str(args.trial_seconds)  # workers inherit it from ray.init

    with tempfile.TemporaryDirectory() as tmp:
        name = f"bench-overhead-{int(time.time())}"
        spec = bench_spec(name, args.trials, args.concurrency, Path(args.workdir or tmp) / name)
        bare = None if args.skip_bare else summarise(run_bare(spec, args.concurrency), args.concurrency,
                                                     args.trial_seconds)
        from samprivacy.sweep import runner

        # when each of the service's trials begins (its workers inherit the variable from ray.init)
        os.environ["SAMPRIVACY_TRIVIAL_STARTS"] = str(Path(tmp) / "starts.txt")
        ray_start = time.time()
        runner.start_ray(None)
        ray_init_s = time.time() - ray_start
        service = summarise(run_service(spec), args.concurrency, args.trial_seconds)

    fixed = service["per_trial_slot_s"] - (bare["per_trial_slot_s"] if bare else 0.0)
    print(f"{args.trials} trivial trials ({args.trial_seconds} s of work each), concurrency {args.concurrency}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for label, side in (("bare loop", bare), ("service", service)):
        if side:
            print(f"  {label:9}: wall {side['wall_s']:7.1f} s   per trial {side['per_trial_slot_s']:.3f} slot-s   "
                  f"start {side['start_s']:.2f} s   finish {side['finish_s']:.2f} s")
    print(f"  ray.init (not in the service's start: a running cluster has it) {ray_init_s:.1f} s; CPU per trial "
          f"(driver, Ray's daemons and workers) {service.get('cpu_per_trial_s', float('nan')):.3f} s")
    print(f"fixed cost per trial: {fixed:.3f} s per slot (target <= {TARGET_PER_TRIAL_S}); sweep start "
          f"{service['first_trial_at_s']:.2f} s to the first trial's start (target <= {TARGET_START_S}); finish "
          f"{service['finish_s']:.2f} s (target <= {TARGET_FINISH_S} at 10,000 trials)")
    print(f"  start, in parts: preflight (data loaded once) {service['preflight_s']:.2f} s, MLflow store "
          f"{service['mlflow_store_s']:.2f} s, Tune begins at {service['first_fit_at_s']:.2f} s, the first trial "
          f"starts at {service['first_trial_at_s']:.2f} s and ends at {service['start_s']:.2f} s")
    if "thousands_s" in service:
        growth = service["thousands_s"][-1] / service["thousands_s"][0]
        print("seconds per thousand:", " ".join(f"{s:.1f}" for s in service["thousands_s"]),
              f"-> last / first {growth:.2f}x, along the fitted line {service['fitted_growth']:.2f}x "
              f"(target <= {TARGET_GROWTH})")
        print("driver RSS (MiB) at each thousand:", " ".join(f"{m:.0f}" for m in service.get("rss_mib") or [] if m))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": platform.platform(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "trials": args.trials, "concurrency": args.concurrency,
            "trial_seconds": args.trial_seconds, "ray_init_s": ray_init_s, "bare": bare,
            "service": {k: v for k, v in service.items() if k != "sampler"},
            "fixed_per_trial_slot_s": fixed}, indent=2))


if __name__ == "__main__":
    main()
