"""How low an FPR a spec's trials can measure: the pool a population would draw from, the non-members behind each
TPR it would report, and a warning for every objective its population cannot reach (what `validate` prints).

    info, warnings = sweep_reach(spec)     # loads each dataset once (cheap for generated or tabular data)

A TPR at FPR f needs at least 1 / f non-members (below that it is reported missing and a sweep's trial fails on
it) and about 10 / f for an estimate that does not rest on a handful of false positives. The pooled figures
(`lira_tpr_at_fpr_0.001`) stand on models * pool * (1 - fraction) non-members; per-target ones
(`..._per_target`, `attack_tpr_at_fpr_*`) on pool * (1 - fraction), or half that for single-model attacks, which
are scored on the pool's eval half.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable

from samprivacy import catalog
from samprivacy.audit.lowfpr import missing_reason
from samprivacy.pipeline.setup import load_data, population_pool
from samprivacy.spec import TrialConfig

if TYPE_CHECKING:
    from samprivacy.spec.sweep import SweepSpec

ENOUGH_FALSE_POSITIVES = 10  # below this many, a TPR at low FPR is decided by a handful of non-members


def trial_reach(config: TrialConfig, objectives: Iterable[str]) -> tuple[dict, list[str]]:
    """({pool, negatives per target, pooled negatives, ...}, warnings) for the trials of `config`."""
    dataset = load_data(config)
    pop = config.population
    if pop is None:
        eval_negatives = len(dataset.splits.eval_nonmembers)
        info = {"dataset": config.dataset, "eval_nonmembers": eval_negatives}
        return info, [w for m in objectives if (w := _warn(m, eval_negatives, None)) is not None]
    pool = len(population_pool(dataset, pop.pool))
    per_target = int(pool * (1 - pop.fraction))
    pooled = pop.models * per_target
    strong = [a for a in config.attack_names() if catalog.ATTACKS[a].needs_population]
    info = {"dataset": config.dataset, "pool": pool, "pool_protocol": pop.pool, "models": pop.models,
            "negatives_per_target": per_target, "negatives_pooled": pooled}
    warnings = []
    for metric in objectives:
        if catalog.metric_fpr(metric) is None:
            continue
        if metric.startswith("attack_"):
            negatives = per_target if strong else per_target // 2
            warning = _warn(metric, negatives, None, pool_per_negative=(1 - pop.fraction) / (1 if strong else 2))
        elif metric.endswith(catalog.PER_TARGET):
            warning = _warn(metric, per_target, None, pool_per_negative=1 - pop.fraction)
        else:
            warning = _warn(metric, pooled, per_target, pool_per_negative=pop.models * (1 - pop.fraction))
        warnings += [warning] if warning else []
    return info, warnings


def _warn(metric: str, negatives: int, per_model: int | None, pool_per_negative: float | None = None) -> str | None:
    """A warning when `negatives` cannot reach the metric's FPR well; per_model: negatives each model adds."""
    fpr = catalog.metric_fpr(metric)
    if fpr is None:
        return None
    need = math.ceil(ENOUGH_FALSE_POSITIVES / fpr)
    if negatives >= need:
        return None
    fixes = []
    if per_model:
        fixes.append(f"population.models >= {math.ceil(need / per_model)}")
    if pool_per_negative:
        fixes.append(f"a pool of >= {math.ceil(need / pool_per_negative):,} examples")
    fix = (" or ".join(fixes) + f" would put {need:,} behind it") if fixes else \
        f"a dataset with >= {need:,} evaluation non-members would"
    if missing_reason(fpr, negatives) is not None:
        return (f"objective `{metric}` stands on {negatives:,} non-members, fewer than the {math.ceil(1 / fpr):,} "
                f"that FPR {fpr:g} needs: every trial will report it missing (and fail on it); {fix}")
    return (f"objective `{metric}` stands on {negatives:,} non-members: at FPR {fpr:g} it rests on fewer than "
            f"{ENOUGH_FALSE_POSITIVES} false positives and its interval will be wide; {fix}")


def sweep_reach(spec: SweepSpec) -> tuple[list[dict], list[str]]:
    """trial_reach for each dataset of a sweep spec (its first seed)."""
    infos: list[dict] = []
    warnings: list[str] = []
    if spec.population is None and not any(catalog.metric_fpr(m) for m in spec.objectives):
        return infos, warnings  # nothing to size: no need to load the data
    for name in spec.datasets:
        config = TrialConfig(dataset=name, data_root=spec.data_root, download=spec.download,
                             dataset_options=spec.dataset_options.get(name), seed=spec.seeds[0],
                             split_seed=spec.train.split_seed, population=spec.population, attacks=spec.attacks)
        info, warns = trial_reach(config, spec.objectives)
        infos.append(info)
        warnings += [f"{name}: {w}" for w in warns]
    return infos, warnings
