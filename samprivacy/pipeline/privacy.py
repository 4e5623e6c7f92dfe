"""The privacy figures of a population trial's summary: plain names, negatives, intervals, missing values, and
the best attack chosen on targets it is not scored on.

For a population attack (lira, lira_offline, rmia) and each measure M:

    <attack>_M                     the primary figure: AUC and TPR at low FPR of the ROC pooled over targets;
                                   accuracy and advantage as the mean over targets (a rule is fitted per target)
    <attack>_M_per_target          the mean over targets of each target's own figure
    <attack>_M_per_target_std      its spread over targets (targets share examples: a spread, not an error)
    <attack>_tpr_at_fpr_F[_per_target]_negatives, _ci_low, _ci_high
                                   the non-members behind a TPR and its 95% bootstrap interval (audit.lowfpr)

A TPR at an FPR below 1 / negatives is None, and `missing` in the summary says why.

attack_<measure> (the strongest attack by each measure) is cross-fitted so that it is not the maximum of noisy
means: the attack with the best mean on the even-numbered targets is measured on the odd ones, and the other way
round, and the two are averaged. With one model there is nothing to hold out: the plain maximum, with a note.
"""

from __future__ import annotations

import math

import numpy as np

from samprivacy import catalog
from samprivacy.audit.lowfpr import missing_reason
from samprivacy.audit.metrics import AttackMetrics
from samprivacy.audit.population import PopulationAttackResult
from samprivacy.catalog import ATTACK_MEASURES, LOW_FPRS, attack_measure_metric

TPR_MEASURES = tuple(f"tpr_at_fpr_{f}" for f in LOW_FPRS)


def population_attack_metrics(results: dict[str, PopulationAttackResult]) -> tuple[dict, dict[str, str]]:
    """The flat metrics of every population attack (see the module docstring) and {metric: why it is missing}."""
    flat: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    for name, r in results.items():
        primary, means, stds = r.primary(), r.mean(), r.std()
        for key in ATTACK_MEASURES:
            metric = attack_measure_metric(name, key)
            flat |= {metric: primary[key], f"{metric}_per_target": means[key], f"{metric}_per_target_std": stds[key]}
        for f in LOW_FPRS:
            metric = attack_measure_metric(name, f"tpr_at_fpr_{f}")
            for view, figure in (("", r.figures.pooled[f]), (catalog.PER_TARGET, r.figures.per_target[f])):
                flat |= {f"{metric}{view}": figure.value, f"{metric}{view}_ci_low": figure.low,
                         f"{metric}{view}_ci_high": figure.high, f"{metric}{view}_negatives": figure.negatives}
                if figure.missing:
                    missing[f"{metric}{view}"] = figure.missing
            if r.figures.per_target[f].missing:  # no spread of a figure that is not there
                flat[f"{metric}{catalog.PER_TARGET}_std"] = None
    return flat, missing


def per_target_table(records_attacks: list[dict[str, AttackMetrics]], strong: dict[str, PopulationAttackResult],
                     eval_negatives: int) -> dict[str, dict[str, np.ndarray]]:
    """attack -> measure -> (K,) per-target values; NaN where a TPR is missing for want of negatives (single-model
    attacks are scored on the eval half, eval_negatives non-members per target at the fewest)."""
    table = {}
    for name in (records_attacks[0] if records_attacks else {}):
        rows = [a[name].to_dict() for a in records_attacks]
        table[name] = {key: np.array([row[key] for row in rows], float) for key in ATTACK_MEASURES}
    for name, r in strong.items():
        table[name] = {key: np.array([m.to_dict()[key] for m in r.per_target], float) for key in ATTACK_MEASURES}
    for name, values in table.items():
        # population attacks are scored on the whole pool: their own per-target negatives
        negatives = strong[name].figures.per_target[LOW_FPRS[0]].negatives if name in strong else eval_negatives
        for key, f in zip(TPR_MEASURES, LOW_FPRS):
            if missing_reason(f, negatives) is not None:
                values[key] = np.full_like(values[key], np.nan)
    return table


def cross_fitted_best(values: dict[str, np.ndarray]) -> tuple[float | None, str | None, str | None]:
    """(value, attack, note) of the strongest attack by one measure, chosen on half the targets and measured on
    the other half, both ways, averaged. values: attack -> (K,) per-target values (NaN: missing, left out).
    attack: the one with the best mean over all targets (what to name); note: why the value is not held out."""
    usable = {n: v for n, v in values.items() if np.isfinite(v).all()}
    if not usable:
        return None, None, None
    best = max(usable, key=lambda n: usable[n].mean())
    k = len(next(iter(usable.values())))
    if k < 2:
        return float(usable[best].mean()), best, "one model: the best attack is chosen on the figures it reports"
    halves = (np.arange(k) % 2 == 0, np.arange(k) % 2 == 1)
    held_out = []
    for choose, report in (halves, halves[::-1]):
        pick = max(usable, key=lambda n: usable[n][choose].mean())
        held_out.append(usable[pick][report].mean())
    return float(np.mean(held_out)), best, None


def best_attacks(table: dict[str, dict[str, np.ndarray]]) -> dict:
    """The summary's attack_* figures, single_query_acc, label_only_acc and best_attack, all cross-fitted."""
    out: dict[str, float | str | None] = {}
    notes: set[str] = set()

    def pick(measure: str, kind: str | None = None) -> tuple[float | None, str | None]:
        values = {n: t[measure] for n, t in table.items() if kind is None or catalog.ATTACKS[n].kind == kind}
        value, name, note = cross_fitted_best(values)
        notes.update([note] if note else [])
        return value, name

    out["attack_acc"], out["best_attack"] = pick("accuracy")
    for key in ("auc", "advantage", *TPR_MEASURES):
        out[f"attack_{key}"] = pick(key)[0]
    out["single_query_acc"] = pick("accuracy", "single_query")[0]
    out["label_only_acc"] = pick("accuracy", "label_only")[0]
    if notes:
        out["best_attack_note"] = "; ".join(sorted(notes))
    return out


def finite_or_none(value: float | None) -> float | None:
    return value if value is None or not isinstance(value, float) or math.isfinite(value) else None
