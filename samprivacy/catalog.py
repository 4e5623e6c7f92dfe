"""Every name samprivacy knows, in one torch-free place: optimizers and their parameters, datasets, models,
attacks, and the metrics a trial reports.

The spec (validation, objectives), the registries in learn/ and audit/ (which build themselves from these
tables) and the CLI (help texts, `samprivacy catalog`) all read this module, so adding an attack, a metric or an
optimizer is one entry here plus its implementation:

    an optimizer   an entry in OPTIMIZERS (its preset and the parameters a user may set); learn.optim reads it
    a dataset      an entry in DATASETS naming its loader ("module:function"); learn.data imports it lazily
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
    loader: str  # "module:function" returning a learn.data.Dataset
    summary: str
    default_model: tuple[str, tuple[int, ...] | None]  # (model name, hidden sizes) unless the user names one


PAPER_FC_HIDDEN = (1024, 512, 256)  # Tang et al. (SELENA) and the paper; SELENA's code adds a 128-unit layer
_DATA = "samprivacy.learn.data"
DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(f"{_DATA}.digits:load_digits",
                           "scikit-learn's bundled 8x8 digits (ships with the package)", ("fc", (256, 128))),
    "longtail": DatasetEntry(f"{_DATA}.longtail:load_longtail",
                             "a generated long-tailed mixture with planted singletons (Feldman 2020)",
                             ("fc", (256, 128))),
    "purchase100": DatasetEntry(f"{_DATA}.purchase:load_purchase100",
                                "Purchase-100 (600 binary features, 100 classes), files at data_root",
                                ("fc", PAPER_FC_HIDDEN)),
    "texas100": DatasetEntry(f"{_DATA}.texas:load_texas100",
                             "Texas-100 (6,169 binary features, 100 classes), files at data_root",
                             ("fc", PAPER_FC_HIDDEN)),
    "cifar10": DatasetEntry(f"{_DATA}.cifar:load_cifar10", "CIFAR-10 python-version folder at data_root",
                            ("wrn16-8", None)),
    "cifar100": DatasetEntry(f"{_DATA}.cifar:load_cifar100", "CIFAR-100 python-version folder at data_root",
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
    "attack_acc": "the strongest attack's balanced accuracy (threshold fitted on the known sets)",
    "attack_auc": "the highest AUC of any attack",
    "attack_advantage": "the highest TPR - FPR of any attack at its fitted threshold",
    **{f"attack_tpr_at_fpr_{f}": f"the highest TPR at {f:.1%} FPR of any attack" for f in LOW_FPRS},
    "single_query_acc": "the best single-query attack's accuracy (Table 1)",
    "label_only_acc": "the best label-only attack's accuracy (Table 1)",
}
# What a trial with a population adds (besides each population attack's measures, `<attack>_<measure>`).
POPULATION_METRICS: dict[str, str] = {
    "test_acc_std": "standard deviation of test accuracy over the population's models",
    "conf_var_out": "mean over pool examples of the variance of the logit-scaled confidence over OUT models",
    "conf_var_test": "mean over held-out test examples of the variance of the logit-scaled confidence over models",
}


def attack_measure_metric(attack: str, measure: str) -> str:
    """The metric name of one attack's measure: `lira_tpr_at_fpr_0.001`, `rmia_auc`, ..."""
    return f"{attack}_{measure}"


def objective_metrics() -> tuple[str, ...]:
    """Every metric a spec may name as an objective, in a stable order."""
    strong = tuple(attack_measure_metric(a, m) for a in POPULATION_ATTACKS for m in ATTACK_MEASURES)
    return (*TRIAL_METRICS, *POPULATION_METRICS, *strong)


def metric_needs(metric: str) -> tuple[str, ...]:
    """What a trial must run to report `metric`: ("population",), ("attack", name), ("label_only",), ..."""
    if metric in POPULATION_METRICS:
        return ("population",)
    for attack in POPULATION_ATTACKS:
        if metric.startswith(f"{attack}_") and metric[len(attack) + 1:] in ATTACK_MEASURES:
            return ("attack", attack)
    if metric == "label_only_acc":
        return ("kind", "label_only")
    if metric == "single_query_acc":
        return ("kind", "single_query")
    return ()


SAMPLER_NAMES = ("tpe", "nsga2", "gp", "random", "grid")
