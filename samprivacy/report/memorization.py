"""The memorization report: several optimizers' populations on the same plan, compared per influence-entropy
bucket (the paper's Figures 3a, 4a and 5a), with memorization scores and the confidence variance beside them.

    report = memorization_report({"sgd": stats_sgd, "sam": stats_sam}, labels, test_labels, reference="sgd")
    report.to_dict()        # JSON-ready: per optimizer, bucket accuracies with standard errors, ...
    plot_buckets(report, path)

Buckets are fixed from the reference population (the paper: SGD's) and every optimizer is measured on them.
The reference's own accuracy per bucket is measured on models that did not fix the buckets: its population is
split in two (even and odd models), one half fixes the buckets, the other is measured (when each half still has
every example IN and OUT; otherwise the whole population does both, and the report says so). Beside the table: a
null baseline (the same computation with the membership matrix shuffled: what noise alone gives), the number of
test examples without an entropy, and in words whether the population is large enough for the buckets to mean
more than noise. Pure numpy + matplotlib: no Ray, no Optuna, no MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from samprivacy.audit.memorization import (BUCKETS, NullBuckets, bucket_accuracy, entropy_buckets,
                                           influence_entropy, memorization, null_buckets, split_models)
from samprivacy.audit.metrics import auc
from samprivacy.audit.population import confidence_variance
from samprivacy.learn.population import PopulationStats


@dataclass(frozen=True, eq=False)
class OptimizerMemorization:
    memorization: np.ndarray  # (N,) per pool example
    memorization_stderr: np.ndarray  # (N,)
    test_acc: float
    bucket_acc: np.ndarray  # (B,) mean over models
    bucket_stderr: np.ndarray  # (B,)
    conf_var_out: float  # mean over pool examples of the variance over OUT models
    bucket_conf_var: np.ndarray  # (B,) mean over the bucket's test examples of the variance over models
    singleton_auc: float | None  # AUC of the memorization score for "is a planted singleton"


@dataclass(frozen=True, eq=False)
class MemorizationReport:
    reference: str
    entropy: np.ndarray  # (M,) of the reference population
    bucket: np.ndarray  # (M,) 0..B-1, -1 without influence
    edges: np.ndarray  # (B + 1,)
    bucket_size: np.ndarray  # (B,)
    top_memorization: list[np.ndarray]  # per bucket: memorization score of each test example's top influencer
    optimizers: dict[str, OptimizerMemorization] = field(default_factory=dict)
    models: int = 0
    null: NullBuckets | None = None  # the bucket table with the membership shuffled: what noise alone gives
    no_entropy: int = 0  # test examples without an influence entropy (every model right, or every model wrong)
    split: bool = False  # the reference measured on models that did not fix the buckets
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "reference": self.reference, "models": self.models, "buckets": len(self.bucket_size),
            "bucket_size": self.bucket_size.tolist(), "entropy_edges": self.edges.tolist(),
            "no_entropy": self.no_entropy, "reference_split": self.split, "notes": list(self.notes),
            "null": None if self.null is None else {
                "bucket_acc": self.null.bucket_acc.tolist(), "spread": self.null.spread,
                "spread_std": self.null.spread_std, "shuffles": self.null.shuffles},
            "top_influencer_memorization_median": [float(np.median(v)) if len(v) else None
                                                   for v in self.top_memorization],
            "optimizers": {name: {
                "test_acc": o.test_acc, "bucket_acc": o.bucket_acc.tolist(), "bucket_stderr": o.bucket_stderr.tolist(),
                "memorization_mean": float(o.memorization.mean()),
                "memorization_stderr_mean": float(o.memorization_stderr.mean()),
                "conf_var_out": o.conf_var_out, "bucket_conf_var": o.bucket_conf_var.tolist(),
                "singleton_auc": o.singleton_auc} for name, o in self.optimizers.items()},
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"entropy": self.entropy, "bucket": self.bucket, "edges": self.edges}
        for name, o in self.optimizers.items():
            out[f"{name}_memorization"] = o.memorization
            out[f"{name}_memorization_stderr"] = o.memorization_stderr
        return out


NOISE_SPREAD = 0.05  # a null spread of bucket accuracies above this: the buckets mostly sort noise


def memorization_report(populations: dict[str, PopulationStats], labels: np.ndarray, test_labels: np.ndarray, *,
                        reference: str, singletons: np.ndarray | None = None, buckets: int = BUCKETS,
                        significance: float = 0.0, shuffles: int = 5, seed: int = 0) -> MemorizationReport:
    """Compare `populations` (same pool, same test set, same membership plan) on the reference's buckets.

    singletons (N,) bool marks pool examples that are planted singletons (the longtail dataset), if known.
    shuffles: repetitions of the null baseline (0: none).
    """
    if reference not in populations:
        raise ValueError(f"reference {reference!r} is not among the populations {sorted(populations)}")
    ref = populations[reference]
    halves = split_models(ref.keep)
    fix, measure = halves if halves else (np.ones(ref.keep.shape[0], bool),) * 2
    influence = influence_entropy(ref.keep[fix], ref.test_correct[fix], labels, test_labels, significance)
    bucket, edges = entropy_buckets(influence.entropy, buckets)
    ref_mem, _ = memorization(ref.keep, ref.correct)
    top = [ref_mem[influence.top_index[(bucket == b) & (influence.top_index >= 0)]] for b in range(buckets)]
    optimizers = {}
    for name, stats in populations.items():
        mem, err = memorization(stats.keep, stats.correct)
        measured = stats.test_correct[measure] if name == reference else stats.test_correct
        acc, acc_err, size = bucket_accuracy(measured, bucket, buckets)
        variance = confidence_variance(stats)
        per_bucket_var = np.array([np.nanmean(variance.test[bucket == b]) if (bucket == b).any() else np.nan
                                   for b in range(buckets)])
        single = float(auc(mem, singletons)) if singletons is not None and 0 < singletons.sum() < len(mem) else None
        optimizers[name] = OptimizerMemorization(mem, err, float(stats.test_correct.mean()), acc, acc_err,
                                                 variance.summary["conf_var_out"], per_bucket_var, single)
    null = null_buckets(ref.keep[fix], ref.test_correct[fix], labels, test_labels, rng=np.random.default_rng(seed),
                        buckets=buckets, significance=significance, shuffles=shuffles,
                        measured=ref.test_correct[measure]) if shuffles else None
    no_entropy = int((~np.isfinite(influence.entropy)).sum())
    notes = _notes(null, int(fix.sum()), no_entropy, len(test_labels), halves is not None, reference)
    return MemorizationReport(reference, influence.entropy, bucket, edges, size, top, optimizers,
                              models=ref.keep.shape[0], null=null, no_entropy=no_entropy, split=halves is not None,
                              notes=notes)


def _notes(null: NullBuckets | None, models: int, no_entropy: int, tests: int, split: bool,
           reference: str) -> tuple[str, ...]:
    notes = []
    if no_entropy:
        notes.append(f"{no_entropy} of {tests} test examples have no influence entropy (every {reference} model "
                     "got them right, or every one wrong) and are in no bucket")
    if not split:
        notes.append(f"{reference}'s population is too small to split: its bucket accuracies are measured on the "
                     "same models that fixed the buckets")
    if null is not None and np.isfinite(null.spread):
        if null.spread > NOISE_SPREAD:
            needed = int(np.ceil(models * (null.spread / NOISE_SPREAD) ** 2))
            notes.append(f"noise alone (membership shuffled) spreads the bucket accuracies by {null.spread:.3f} "
                         f"± {null.spread_std:.3f} with the {models} models that fix the buckets: differences "
                         f"between buckets smaller than that are noise; about {needed} models would bring it "
                         f"under {NOISE_SPREAD}")
        else:
            notes.append(f"noise alone (membership shuffled) spreads the bucket accuracies by {null.spread:.3f} "
                         f"± {null.spread_std:.3f}")
    return tuple(notes)


def bucket_rows(report: MemorizationReport) -> list[dict]:
    """One row per optimizer: test accuracy in each bucket as 'mean±stderr' (bucket 1 = lowest entropy)."""
    def cell(acc: float, err: float) -> str:
        return f"{acc:.3f}±{err:.3f}".replace("±0.", "±.")  # narrow enough for five buckets in 80 columns

    rows = [{"optimizer": name, **{f"bucket {b + 1}": cell(o.bucket_acc[b], o.bucket_stderr[b])
                                   for b in range(len(report.bucket_size))}}
            for name, o in report.optimizers.items()]
    if report.null is not None:
        rows.append({"optimizer": f"null ({report.reference}, shuffled)",
                     **{f"bucket {b + 1}": f"{report.null.bucket_acc[b]:.3f}" for b in range(len(report.bucket_size))}})
    return rows


def summary_rows(report: MemorizationReport) -> list[dict]:
    """One row per optimizer: test accuracy, mean memorization score, confidence variance, singleton AUC."""
    rows = []
    for name, o in report.optimizers.items():
        row = {"optimizer": name, "test acc": f"{o.test_acc:.4f}", "mean mem": f"{o.memorization.mean():.3f}",
               "conf var (OUT)": f"{o.conf_var_out:.3f}"}
        if o.singleton_auc is not None:
            row["singleton AUC"] = f"{o.singleton_auc:.3f}"
        rows.append(row)
    return rows


def plot_buckets(report: MemorizationReport, path: str | Path) -> Path:
    """Test accuracy per influence-entropy bucket, one bar group per bucket, one colour per optimizer, with
    standard-error bars; and the confidence variance of unseen examples per bucket beside it."""
    from matplotlib.figure import Figure  # no pyplot: safe in worker threads

    fig = Figure(figsize=(10, 4), layout="constrained")
    acc_ax, var_ax = fig.subplots(1, 2)
    names, b = list(report.optimizers), np.arange(len(report.bucket_size))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        o = report.optimizers[name]
        acc_ax.bar(b + i * width, o.bucket_acc, width, yerr=o.bucket_stderr, capsize=2, label=name)
        var_ax.bar(b + i * width, o.bucket_conf_var, width, label=name)
    if report.null is not None:
        acc_ax.plot(b + width * (len(names) - 1) / 2, report.null.bucket_acc, "k--", marker="o", ms=3,
                    label=f"null: membership shuffled (spread {report.null.spread:.3f})")
    for ax, title in ((acc_ax, "test accuracy (± s.e. over models)"),
                      (var_ax, "variance of the logit-scaled confidence on unseen examples")):
        ax.set_xticks(b + width * (len(names) - 1) / 2, [f"{k + 1}" for k in b])
        ax.set_xlabel(f"influence-entropy bucket (1 = lowest, from {report.reference}'s population)")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    acc_ax.legend(fontsize=8)
    fig.suptitle(f"memorization buckets, {report.models} models per optimizer", fontsize=10)
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_memorization(report: MemorizationReport, path: str | Path) -> Path:
    """Distribution of memorization scores per optimizer (pool examples), and of the top influencer's
    memorization score for test examples in the lowest and highest bucket (the paper's Figure 3b/c)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    mem_ax, top_ax = fig.subplots(1, 2)
    bins = np.linspace(-1, 1, 41)
    for name, o in report.optimizers.items():
        mem_ax.hist(o.memorization, bins=bins, histtype="step", label=name)
    mem_ax.set(xlabel="memorization score (P[correct | IN] - P[correct | OUT])", ylabel="pool examples")
    mem_ax.legend(fontsize=8)
    for b in (0, len(report.top_memorization) - 1):
        top_ax.hist(report.top_memorization[b], bins=bins, histtype="step", label=f"bucket {b + 1}")
    top_ax.set(xlabel="memorization score of the top influencer", ylabel="test examples")
    top_ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return Path(path)
