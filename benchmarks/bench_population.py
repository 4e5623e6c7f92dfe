"""What a population of K models costs trained as one stacked model against K trainings in a row, side by side.

    OMP_NUM_THREADS=1 python benchmarks/bench_population.py                # K = 4, 16, 64; mlp and fc; sgd and sam
    python benchmarks/bench_population.py --models 16 --arch mlp --optimizer sgd --json bench-population.json
    python benchmarks/bench_population.py --device cuda                    # on a GPU, plus time spent in kernels

The shapes of the issue's hand measurements (synthetic data, so nothing downloads): `mlp` is a ReLU MLP
200 -> 64 -> 20 on a 2,400-row member pool; `fc` is the paper's Tanh FC on Purchase-like input (600 features,
--fc-hidden, default one 1,024 layer as measured by hand; --fc-hidden 1024 512 256 for the paper's full depth)
on a 5,000-row pool. Every model trains on its own random half of the pool with its own seed (learn.population's
balanced membership), selects its epoch on a validation split, for --epochs epochs at batch size 64.

Measured per case, interleaved: one model alone (`train`), K trainings in a row (measured up to
--sequential-max models, beyond that K times the single model, marked "est."), and one stacked training
(`train_stacked`). Read "stacked / one": the cost of the population in single-model trainings, and
"stacked / (row / K)": the same against the mean model of the row (K trainings averaged: steadier on a noisy
machine; estimated rows give the single model's figure again). "floor / one": the stack's matrix products
alone (every forward and gradient product of its steps and evaluations at the stack's shapes, timed apart), in
single-model trainings: no stacked implementation costs less on this device, so a target below it is out of
reach here whatever the code does.
--device cuda adds, for the stacked training, the share of its wall time that the GPU spends in kernels
(torch.profiler); on a CPU the same column is the share of wall time inside torch operators.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import numpy as np
import torch

from samprivacy.learn.data.base import Dataset, Splits
from samprivacy.learn.models import build_model
from samprivacy.learn.population import balanced_membership
from samprivacy.learn.stacked import train_stacked
from samprivacy.learn.train import train
from samprivacy.spec import TrialConfig

ARCHS = {  # name -> (model, features, classes, pool rows, activation's hidden default)
    "mlp": ("mlp", 200, 20, 2400, (64,)),
    "fc": ("fc", 600, 20, 5000, (1024,)),
}
OPTIMIZERS = {"sgd": {}, "sam": {"rho": 0.1}}


def synthetic(features: int, classes: int, pool: int, seed: int = 0) -> Dataset:
    """A learnable Gaussian mixture: a member pool of `pool` rows, 1,000 validation and 1,000 test rows."""
    rng = np.random.default_rng(seed)
    n = pool + 2000
    centres = rng.standard_normal((classes, features))
    y = rng.integers(0, classes, n)
    x = centres[y] + 2.0 * rng.standard_normal((n, features))
    rows = np.arange(n)
    half = pool // 2
    splits = Splits(known_members=rows[:half], eval_members=rows[half:pool], known_nonmembers=rows[pool:pool + 500],
                    eval_nonmembers=rows[pool + 500:pool + 1000], val=rows[pool + 1000:])
    return Dataset("synthetic", torch.tensor(x, dtype=torch.float32), torch.tensor(y), classes, "continuous", splits)


def population(arch: str, k: int, hidden: tuple[int, ...], dataset: Dataset):
    name, *_ = ARCHS[arch]
    pool = np.sort(dataset.splits.train)
    keep = balanced_membership(k, len(pool), 0.5, np.random.default_rng(k))
    seeds = list(range(1, k + 1))

    def models():
        out = []
        for s in seeds:
            torch.manual_seed(s)
            out.append(build_model(name, dataset.input_shape, dataset.num_classes, hidden=hidden))
        return out
    return models, [pool[keep[i]] for i in range(k)], seeds


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def matmul_floor(dims: list[int], k: int, rows: int, val_rows: int, test_rows: int, epochs: int, batch: int,
                 passes: int, device: str) -> float:
    """Seconds the stacked training's matrix products alone take: every layer's forward, weight gradient and (past
    the first layer) input gradient for each step and SAM pass, the validation forward every epoch and the final
    train and test forwards, each at the stack's shapes (K, rows, in) x (K, in, out), timed here. Whatever the
    implementation, a stack of K costs at least this much: the arithmetic is the same as K models'."""
    def seconds(b: int, n: int, m: int, p: int) -> float:
        a, w = torch.randn(b, n, m, device=device), torch.randn(b, m, p, device=device)
        torch.bmm(a, w)
        times = [timed(lambda: torch.bmm(a, w)) for _ in range(5)]
        return statistics.median(times)
    steps = math.ceil(rows / batch) * epochs * passes
    total = 0.0
    for i, (n_in, n_out) in enumerate(zip(dims, dims[1:])):
        total += steps * (seconds(k, batch, n_in, n_out) + seconds(k, n_in, batch, n_out)
                          + (seconds(k, batch, n_out, n_in) if i else 0.0))
        total += epochs * seconds(k, val_rows, n_in, n_out) + seconds(k, rows + test_rows, n_in, n_out)
    return total


def kernel_share(fn, device: str) -> float:
    """Share of fn's wall time the device spends in kernels (CUDA) or in torch operators (CPU), by torch.profiler."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        wall = timed(fn)
    if device == "cuda":  # device-side events (kernels, copies), counted as torch's own table totals them
        busy = sum(e.self_device_time_total for e in prof.events()
                   if e.device_type == DeviceType.CUDA and not e.is_user_annotation)
    else:  # top-level operators only: their children's time is inside theirs
        busy = sum(e.cpu_time_total for e in prof.events() if e.cpu_parent is None)
    return busy / 1e6 / wall


def run_case(arch: str, k: int, optimizer: str, args) -> dict:
    _, features, classes, pool, default_hidden = ARCHS[arch]
    hidden = tuple(args.fc_hidden) if arch == "fc" and args.fc_hidden else default_hidden
    dataset = synthetic(features, classes, pool)
    models, indices, seeds = population(arch, k, hidden, dataset)
    base = TrialConfig(optimizer=optimizer, epochs=args.epochs, batch_size=64, lr=0.05, device=args.device,
                       **OPTIMIZERS[optimizer])
    configs = [base.model_copy(update={"seed": s}) for s in seeds]
    in_a_row = min(k, args.sequential_max)
    singles, rows, stacks = [], [], []
    for _ in range(args.repeats):
        built = models()
        singles.append(timed(lambda: train(built[0], dataset, configs[0], train_index=indices[0])))
        built = models()
        rows.append(timed(lambda: [train(built[i], dataset, configs[i], train_index=indices[i])
                                   for i in range(in_a_row)]))
        built = models()
        stacks.append(timed(lambda: train_stacked(built, dataset, configs, indices)))
    single, stacked = statistics.median(singles), statistics.median(stacks)
    sequential = statistics.median(rows) * k / in_a_row
    floor = matmul_floor([features, *hidden, classes], k, len(indices[0]), len(dataset.splits.val),
                         len(dataset.splits.test), args.epochs, 64, 2 if optimizer == "sam" else 1, args.device)
    figures = {"arch": arch, "hidden": list(hidden), "models": k, "optimizer": optimizer, "one_model_s": single,
               # the stack's matrix products alone, in single-model trainings: no stacked training costs less
               "matmul_floor_s": floor, "floor_over_one_model": floor / single,
               "sequential_s": sequential, "sequential_estimated": in_a_row < k, "stacked_s": stacked,
               "stacked_over_one_model": stacked / single, "sequential_over_stacked": sequential / stacked,
               # the same cost against the mean model of the row: K trainings' average, steadier than one
               "stacked_over_row_model": stacked / (sequential / k)}
    if args.profile or args.device == "cuda":
        built = models()
        figures["busy_share"] = kernel_share(lambda: train_stacked(built, dataset, configs, indices), args.device)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--arch", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--optimizer", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    parser.add_argument("--fc-hidden", type=int, nargs="+", help="fc hidden sizes (default: 1024)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sequential-max", type=int, default=16,
                        help="train at most this many in a row; beyond, K x one model (marked est.)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--profile", action="store_true", help="on CPU too: share of wall time in torch operators")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine")
    torch.set_num_threads(args.threads)
    busy = ("kernels" if args.device == "cuda" else "in ops") if args.profile or args.device == "cuda" else ""
    print(f"{'case':<14}{'K':>4}{'one model':>11}{'K in a row':>15}{'stacked':>10}{'stacked/one':>13}"
          f"{'stacked/(row/K)':>17}{'row/stacked':>13}{'floor/one':>11}{busy:>9}")
    run_case(args.arch[0], 2, args.optimizer[0], argparse.Namespace(**{**vars(args), "epochs": 1, "profile": False}))
    results = []  # (the case above warmed up imports and allocators; it is not reported)
    for arch in args.arch:
        for optimizer in args.optimizer:
            for k in args.models:
                f = run_case(arch, k, optimizer, args)
                results.append(f)
                est = " est." if f["sequential_estimated"] else "     "
                share = f"{f['busy_share']:>9.0%}" if "busy_share" in f else ""
                print(f"{arch + '-' + optimizer:<14}{k:>4}{f['one_model_s']:>10.2f}s{f['sequential_s']:>9.2f}s{est}"
                      f"{f['stacked_s']:>9.2f}s{f['stacked_over_one_model']:>12.2f}x"
                      f"{f['stacked_over_row_model']:>16.2f}x{f['sequential_over_stacked']:>12.2f}x"
                      f"{f['floor_over_one_model']:>10.2f}x{share}", flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"cases": results, "epochs": args.epochs, "device": args.device, "threads": args.threads,
                       "platform": platform.platform(), "torch": torch.__version__}, out, indent=2)


if __name__ == "__main__":
    main()
