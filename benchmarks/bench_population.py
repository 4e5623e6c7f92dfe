"""What a population of K models costs against one model of the same configuration, side by side in one run.

    python benchmarks/bench_population.py                       # longtail, K = 8, 20 epochs
    python benchmarks/bench_population.py --models 16 --dataset digits --json bench-population.json

Measured, interleaved so that machine noise hits both sides: (a) one model trained on a random half of the
member pool and measured (its per-example statistics), (b) a population trial of K such models with every
attack of the trial run against each in turn (threshold attacks per model, then LiRA and RMIA on the stacked
statistics). On a CPU the population costs about K times one model plus LiRA and RMIA, whose share is printed
on its own. (On a GPU the K models could train as one batched ensemble; not done yet.)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from samprivacy.learn.population import PopulationPlan, default_queries
from samprivacy.pipeline import load_data, run_population_trial
from samprivacy.pipeline.members import train_member
from samprivacy.spec import Population, TrialConfig


def one_model(config: TrialConfig, dataset, plan: PopulationPlan, queries: int) -> float:
    """One model alone: trained, measured, and attacked with the trial's single-model attacks."""
    single = tuple(a for a in config.attack_names() if a not in ("lira", "lira_offline", "rmia"))
    start = time.perf_counter()
    train_member(config, dataset, plan, 0, queries, single)
    return time.perf_counter() - start


def population(config: TrialConfig) -> tuple[float, float]:
    """(wall seconds of the whole population trial, seconds spent on its models: train, measure, attack)."""
    start = time.perf_counter()
    result = run_population_trial(config)
    wall = time.perf_counter() - start
    return wall, sum(r.metrics["seconds"] for r in result.records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="longtail")
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrialConfig(dataset=args.dataset, optimizer=args.optimizer, epochs=args.epochs, device="cpu",
                         attacks=("loss", "confidence_classwise", "lira", "lira_offline", "rmia"),
                         population=Population(models=args.models))
    dataset = load_data(config)
    plan = PopulationPlan.make(dataset, args.models, 0.5, seed=config.seed)
    queries = default_queries(dataset.feature_kind)
    one_model(config, dataset, plan, queries)  # warm-up: imports, first allocations
    singles, walls, trainings = [], [], []
    for _ in range(args.repeats):
        singles.append(one_model(config, dataset, plan, queries))
        wall, training = population(config)
        walls.append(wall)
        trainings.append(training)
        singles.append(one_model(config, dataset, plan, queries))
    single, wall, training = statistics.median(singles), statistics.median(walls), statistics.median(trainings)
    figures = {
        "dataset": args.dataset, "models": args.models, "epochs": args.epochs, "optimizer": args.optimizer,
        "one_model_s": single, "population_s": wall, "population_over_one_model": wall / single,
        "per_model_over_one_model": training / args.models / single, "audit_share": 1 - training / wall,
        "threads": args.threads, "platform": platform.platform(), "torch": torch.__version__,
    }
    print(f"one model: {single:.2f} s   population of {args.models}: {wall:.2f} s   "
          f"ratio {wall / single:.2f}x (K = {args.models})")
    print(f"per model inside the population: {figures['per_model_over_one_model']:.2f}x one model alone; "
          f"LiRA and RMIA on every target: {figures['audit_share']:.1%} of the population's time")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
