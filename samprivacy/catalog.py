"""Every name samprivacy knows, in one torch-free place: optimizers and their parameters, datasets, models,
attacks, and the metrics a trial reports.

The spec (validation, objectives), the registries in learn/ and audit/ (which build themselves from these
tables) and the CLI (help texts, `samprivacy catalog`) all read this module, so adding an attack, a metric or an
optimizer is one entry here plus its implementation:

    an optimizer   an entry in OPTIMIZERS (its preset and the parameters a user may set); learn.optim reads it
    a dataset      an entry in DATASETS naming its reader ("module:function"); learn.data imports it lazily
    a model        an entry in MODELS naming its builder; learn.models reads it
    an attack      an entry in ATTACKS naming its family (how audit/ runs it) and its options
    a metric       a trial reports every attack's ATTACK_MEASURES; objective_metrics() lists what a spec may use

Plain data only (no torch, numpy or pydantic): this module imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# ---------------------------------------------------------------------------------------------------------------
# Optimizers: one family, Equation (6) of the paper: min (1 + lam - xi) L(w) - lam L(w + eps), eps = rho g / ||g||.


@dataclass(frozen=True)
class OptimizerEntry:
    summary: str
    params: tuple[str, ...]  # the hyperparameters a user may set for this optimizer (TrialConfig fields)
    # lam, xi, rho (default), adaptive (ASAM), eta; SWA: averaged, swa_start and swa_lr_scale (of the base lr),
    # the defaults of TrialConfig's swa_start and swa_lr
    preset: dict[str, float | bool]
    passes: int  # forward/backward passes per step


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry("plain SGD (or Adam): Equation (6) with lam = xi = 0", (),
                          dict(lam=0.0, xi=0.0, rho=0.0, adaptive=False), 1),
    "sam": OptimizerEntry("SAM (Foret et al.): the gradient at w + eps only (lam = -1)", ("rho",),
                          dict(lam=-1.0, xi=0.0, rho=0.05, adaptive=False), 2),
    "asam": OptimizerEntry("ASAM (Kwon et al.): SAM with eps scaled elementwise by |w| + eta", ("rho",),
                           dict(lam=-1.0, xi=0.0, rho=0.5, adaptive=True, eta=0.01), 2),
    "sharpreg": OptimizerEntry("SharpReg (the paper): sharper minima (lam > 0), xi keeps the loss off zero",
                               ("rho", "lam", "xi"), dict(lam=1.5, xi=0.3, rho=0.01, adaptive=False), 2),
    "swa": OptimizerEntry("SWA (Izmailov et al.): SGD whose weights are averaged over the last epochs",
                          ("swa_start", "swa_lr"), dict(lam=0.0, xi=0.0, rho=0.0, adaptive=False, averaged=True, swa_start=0.75,
                               swa_lr_scale=0.5), 1),
}

# Every optimizer hyperparameter, in a stable order: each is a TrialConfig field of the same name (described there).
OPTIMIZER_PARAMS: tuple[str, ...] = tuple(dict.fromkeys(p for entry in OPTIMIZERS.values() for p in entry.params))


def takers(param: str) -> list[str]:
    """The optimizers that take hyperparameter `param`."""
    return [name for name, entry in OPTIMIZERS.items() if param in entry.params]


def misplaced_param(optimizer: str, param: str) -> str | None:
    """The one check of which optimizer takes which hyperparameter: None when `optimizer` takes `param`, else
    the message that says so and what to do."""
    if param in OPTIMIZERS[optimizer].params:
        return None
    names = takers(param)
    either = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"`{param}` applies only to {either}, not {optimizer!r}; remove it, or use it with {' or '.join(names)}"


# ---------------------------------------------------------------------------------------------------------------
# Datasets and models: names and where their code lives (imported only when used).

@dataclass(frozen=True)
class DatasetEntry:
    reader: str  # "module:function" returning a learn.data.DatasetArrays (numpy: no torch import)
    summary: str
    default_model: tuple[str, tuple[int, ...] | None]  # (model name, hidden sizes) unless the user names one


PAPER_FC_HIDDEN = (1024, 512, 256)  # Tang et al. (SELENA) and the paper; SELENA's code adds a 128-unit layer
_DATA = "samprivacy.learn.data"
DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(f"{_DATA}.digits:read_digits",
                           "scikit-learn's bundled 8x8 digits (ships with the package)", ("fc", (256, 128))),
    "longtail": DatasetEntry(f"{_DATA}.longtail:read_longtail",
                             "a generated long-tailed mixture with planted singletons (Feldman 2020)",
                             ("fc", (256, 128))),
    "purchase100": DatasetEntry(f"{_DATA}.purchase:read_purchase100",
                                "Purchase-100 (600 binary features, 100 classes), files at data_root",
                                ("fc", PAPER_FC_HIDDEN)),
    "texas100": DatasetEntry(f"{_DATA}.texas:read_texas100",
                             "Texas-100 (6,169 binary features, 100 classes), files at data_root",
                             ("fc", PAPER_FC_HIDDEN)),
    "cifar10": DatasetEntry(f"{_DATA}.cifar:read_cifar10", "CIFAR-10 python-version folder at data_root",
                            ("wrn16-8", None)),
    "cifar100": DatasetEntry(f"{_DATA}.cifar:read_cifar100", "CIFAR-100 python-version folder at data_root",
                             ("wrn16-8", None)),
}


@dataclass(frozen=True)
class ModelEntry:
    builder: str  # "module:function(input_shape, num_classes, hidden)"
    input: Literal["any", "image"]
    summary: str


_MODELS = "samprivacy.learn.models"
MODELS: dict[str, ModelEntry] = {
    "fc": ModelEntry(f"{_MODELS}:fc", "any", "fully connected, Tanh (the paper's Purchase/Texas model)"),
    "mlp": ModelEntry(f"{_MODELS}:mlp", "any", "small ReLU MLP (tests, quick CPU runs)"),
    "cnn": ModelEntry(f"{_MODELS}:cnn", "image", "tiny conv net with BatchNorm (image tests)"),
    "wrn16-8": ModelEntry(f"{_MODELS}:wrn16_8", "image", "WideResNet-16-8 (the paper's CIFAR model)"),
}

# ---------------------------------------------------------------------------------------------------------------
# Attacks. kind: what Table 1 calls it (single-query, label-only) or "population" (needs reference models).
# family: how audit/ runs it (audit.suite.FAMILIES); options: passed to the family.

AttackKind = Literal["single_query", "label_only", "population"]


@dataclass(frozen=True)
class AttackEntry:
    kind: AttackKind
    family: str
    summary: str
    options: dict = field(default_factory=dict)

    @property
    def needs_population(self) -> bool:
        return self.kind == "population"


def _threshold(signal: str, classwise: bool = False) -> AttackEntry:
    how = "one threshold per class" if classwise else "one global threshold"
    return AttackEntry("single_query", "classwise" if classwise else "threshold",
                       f"{signal.replace('_', ' ')}, {how} fitted on the attacker's known sets", {"signal": signal})


ATTACKS: dict[str, AttackEntry] = {
    **{s: _threshold(s) for s in ("correctness", "confidence", "entropy", "modified_entropy", "loss")},
    **{f"{s}_classwise": _threshold(s, classwise=True) for s in ("confidence", "entropy", "modified_entropy")},
    "nn": AttackEntry("single_query", "nn", "an MLP on (sorted probabilities, label) trained on the known sets"),
    "label_only": AttackEntry("label_only", "label_only",
                              "fraction of perturbed queries labelled correctly (Choquette-Choo et al.)"),
    "lira": AttackEntry("population", "lira", "LiRA online: IN and OUT Gaussians of the logit-scaled confidence "
                                              "(Carlini et al. 2022)", {"online": True}),
    "lira_offline": AttackEntry("population", "lira", "LiRA offline: one-sided test against OUT models only",
                                {"online": False}),
    "rmia": AttackEntry("population", "rmia", "RMIA offline: pairwise likelihood ratios against population "
                                              "samples (Zarifzadeh et al. 2024), 1-4 reference models"),
}
# Attacks a trial runs when the user names none: every attack that needs no population.
DEFAULT_ATTACKS = tuple(name for name, entry in ATTACKS.items() if not entry.needs_population)
POPULATION_ATTACKS = tuple(name for name, entry in ATTACKS.items() if entry.needs_population)

# ---------------------------------------------------------------------------------------------------------------
# Metrics. Every attack reports ATTACK_MEASURES on the evaluation sets; a trial summarises them.

LOW_FPRS = (0.001, 0.01)  # Carlini et al. 2022: report TPR at 0.1% and 1% FPR
ATTACK_MEASURES = ("accuracy", "auc", *(f"tpr_at_fpr_{f}" for f in LOW_FPRS), "advantage")

TRIAL_METRICS: dict[str, str] = {
    "test_acc": "accuracy on held-out non-members (with a population: the mean over its models)",
    "val_acc": "accuracy of the selected model on the validation split",
    "train_acc": "accuracy of the selected model on its training set",
    "attack_acc": "the strongest attack's balanced accuracy (threshold fitted on the known sets; with a population "
                  "the attack is chosen on half the targets and measured on the other half)",
    "attack_auc": "the highest AUC of any attack",
    "attack_advantage": "the highest TPR - FPR of any attack at its fitted threshold",
    **{f"attack_tpr_at_fpr_{f}": f"the highest TPR at {f:.1%} FPR of any attack" for f in LOW_FPRS},
    "single_query_acc": "the best single-query attack's accuracy (Table 1)",
    "label_only_acc": "the best label-only attack's accuracy (Table 1)",
}
# What a DP trial adds (an objective only where every trial of the sweep is DP: others spend no finite epsilon).
DP_METRICS: dict[str, str] = {
    "epsilon": "dp: the epsilon the RDP accountant says the training spent, at delta (default 1 / training-set size)",
}
# What a trial with a population adds (besides each population attack's measures, `<attack>_<measure>`).
POPULATION_METRICS: dict[str, str] = {
    "test_acc_std": "standard deviation of test accuracy over the population's models",
    "conf_var_out": "mean over pool examples of the variance of the logit-scaled confidence over OUT models",
    "conf_var_test": "mean over held-out test examples of the variance of the logit-scaled confidence over models",
}


# A population attack's measure is reported two ways: `lira_auc` (AUC and TPRs: the ROC pooled over targets, the
# primary figure) and `lira_auc_per_target` (the mean over targets of each target's own figure).
PER_TARGET = "_per_target"


def attack_measure_metric(attack: str, measure: str) -> str:
    """The metric name of one attack's measure: `lira_tpr_at_fpr_0.001`, `rmia_auc`, ..."""
    return f"{attack}_{measure}"


def objective_metrics() -> tuple[str, ...]:
    """Every metric a spec may name as an objective, in a stable order."""
    strong = tuple(attack_measure_metric(a, m) + view for a in POPULATION_ATTACKS for m in ATTACK_MEASURES
                   for view in ("", PER_TARGET))
    return (*TRIAL_METRICS, *POPULATION_METRICS, *strong, *DP_METRICS)


def metric_fpr(metric: str) -> float | None:
    """The FPR a TPR metric is measured at (`lira_tpr_at_fpr_0.001_per_target` -> 0.001), else None."""
    for f in LOW_FPRS:
        if metric.removesuffix(PER_TARGET).endswith(f"tpr_at_fpr_{f}"):
            return f
    return None


def metric_needs(metric: str) -> tuple[str, ...]:
    """What a trial must run to report `metric`: ("population",), ("attack", name), ("label_only",), ..."""
    if metric in POPULATION_METRICS:
        return ("population",)
    if metric in DP_METRICS:
        return ("defense", "dp")
    for attack in POPULATION_ATTACKS:
        if metric.startswith(f"{attack}_") and metric[len(attack) + 1:].removesuffix(PER_TARGET) in ATTACK_MEASURES:
            return ("attack", attack)
    if metric == "label_only_acc":
        return ("kind", "label_only")
    if metric == "single_query_acc":
        return ("kind", "single_query")
    return ()


SAMPLER_NAMES = ("tpe", "nsga2", "gp", "random", "grid")

# ---------------------------------------------------------------------------------------------------------------
# Defenses: the standard membership defenses a front puts beside the optimizers (learn/defenses, docs/defenses.md).
# A trial has at most one; label smoothing and the choice of epoch are training options any trial may set.


@dataclass(frozen=True)
class DefenseEntry:
    summary: str
    params: tuple[str, ...]  # its TrialConfig fields
    optimizers: tuple[str, ...]  # the optimizers it composes with
    cost: str  # trainings per trial (per population model)
    composes: str = ""  # why the optimizers are what they are


_SHARPNESS_FAMILY = ("sgd", "sam", "asam", "sharpreg")
DEFENSES: dict[str, DefenseEntry] = {
    "dp": DefenseEntry("DP-SGD (Abadi et al. 2016) through Opacus: Poisson batches, per-sample clipping, Gaussian "
                       "noise; reports the epsilon it spent (RDP accountant)",
                       ("max_grad_norm", "noise_multiplier", "target_epsilon", "target_delta"), ("sgd",),
                       "1 training; per-sample gradients cost a few SGD steps each",
                       "the sharpness-aware step needs its own privacy analysis (DP-SAT), not implemented: use sgd"),
    "advreg": DefenseEntry("AdvReg (Nasr et al. 2018): loss + alpha * the gain of an inference model trained in "
                           "alternating steps on members vs reference non-members", ("adv_alpha", "adv_steps"),
                           _SHARPNESS_FAMILY, "1 training; each step adds adv_steps inference-model steps (two "
                                              "classifier forward passes each)"),
    "selena": DefenseEntry("SELENA (Tang et al. 2022): Split-AI over K sub-models (each example left out of L), "
                           "then self-distillation; the distilled model is audited", ("selena_k", "selena_l"),
                           _SHARPNESS_FAMILY, "K + 1 trainings (K sub-models on (K - L) / K of the data, one "
                                              "distillation)"),
    "memguard": DefenseEntry("MemGuard (Jia et al. 2019): noise on the confidence vector that drives a surrogate "
                             "attack to 0.5 within an L1 budget, label unchanged; label-only attacks unaffected",
                             ("memguard_budget",), (*_SHARPNESS_FAMILY, "swa"),
                             "1 training + a surrogate attack; every query runs a 40-step noise search"),
}
# Defaults of the defense parameters (TrialConfig's None): the papers' where they give one for small data.
DEFENSE_DEFAULTS: dict[str, float | int] = {"max_grad_norm": 1.0, "noise_multiplier": 1.0, "adv_alpha": 1.0,
                                            "adv_steps": 1, "selena_k": 25, "selena_l": 10, "memguard_budget": 0.5}
DEFENSE_PARAMS: tuple[str, ...] = tuple(dict.fromkeys(p for e in DEFENSES.values() for p in e.params))
SELECTIONS = ("best_val", "last")  # early stopping on the validation split, or the last epoch's weights
# Defenses that are training options (TrialConfig fields any trial may set), named so a sweep can put them on the
# front as methods of their own: the fields each sets (None: the spec must give the field).
TRAINING_DEFENSES: dict[str, dict[str, str | None]] = {
    "label_smoothing": {"label_smoothing": None},
    "last_epoch": {"selection": "last"},
}


def defense_of(param: str) -> str:
    return next(name for name, entry in DEFENSES.items() if param in entry.params)


def defense_problems(defense: str | None, optimizer: str, values: dict) -> list[tuple[str, str]]:
    """(field, message) for a defense setting no trial can run: a parameter of another defense, an optimizer the
    defense does not compose with, SELENA's L >= K, DP's noise given twice. `values`: the defense fields set."""
    out = []
    for param, value in values.items():
        if value is not None and (defense is None or param not in DEFENSES[defense].params):
            out.append((param, f"applies only to defense '{defense_of(param)}'; drop it or set "
                               f"defense: {defense_of(param)}"))
    if defense is None or out:
        return out
    entry = DEFENSES[defense]
    if optimizer not in entry.optimizers:
        out.append(("optimizer", f"defense '{defense}' runs with {' or '.join(entry.optimizers)} only, got "
                                 f"'{optimizer}': {entry.composes or 'choose one of those'}"))
    if defense == "dp" and values.get("noise_multiplier") is not None and values.get("target_epsilon") is not None:
        out.append(("target_epsilon", "give DP either noise_multiplier or target_epsilon, not both (the noise "
                                      "follows from the target); drop one"))
    if defense == "selena":
        k = values.get("selena_k") or DEFENSE_DEFAULTS["selena_k"]
        l = values.get("selena_l") or DEFENSE_DEFAULTS["selena_l"]
        if l >= k:
            out.append(("selena_l", f"must be < selena_k (each example is left out of L of the K sub-models and "
                                    f"trained by the others), got L = {l} with K = {k}; e.g. K = 25, L = 10"))
    return out


def method_name(optimizer: str, defense: str | None = None, label_smoothing: float = 0.0,
                selection: str = "best_val") -> str:
    """What a front, a table row and a plot's legend call a configuration's method: 'sam', 'dp-sgd', 'advreg',
    'selena+sharpreg', 'label_smoothing', 'sharpreg+last_epoch', ..."""
    parts = [] if optimizer == "sgd" else [optimizer]
    if defense is not None:
        parts.insert(0, "dp-sgd" if defense == "dp" and optimizer == "sgd" else defense)
    if label_smoothing:
        parts.append("label_smoothing")
    if selection == "last":
        parts.append("last_epoch")
    return "+".join(parts) or "sgd"
