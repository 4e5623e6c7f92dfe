"""SweepSpec: the example specs load; every malformed spec names the field path and the fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from samprivacy.errors import ConfigError
from pydantic import ValidationError

from samprivacy.spec import (ATTACK_NAMES, DATASET_NAMES, SpecError, TrialConfig, load_spec, parse_spec)
from samprivacy.spec.params import MODEL_NAMES

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).parent / "specs"
BASE = {
    "name": "base",
    "datasets": ["digits"],
    "seeds": [0, 1],
    "optimizers": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.2, "log": True}},
                   "sharpreg": {"rho": 0.01, "lam": {"low": 0.5, "high": 2.0}, "xi": {"low": 0.0, "high": 0.5}}},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.05},
    "trials": 8,
}


def with_(path: str, value, base=BASE) -> dict:
    """A copy of `base` with the dotted `path` set to `value` (the marker DELETE removes the key)."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(last)
    else:
        node[last] = value
    return data


DELETE = object()
GRID = with_("sampler", {"name": "grid"}, with_("trials", DELETE))

# (id, spec, field path, a piece of the fix that the same line must contain)
MALFORMED = [
    ("slug", with_("name", "Quick Start"), "name", "e.g. 'quick-start'"),
    ("top-level typo", with_("trails", 5), "trails", "did you mean 'trials'"),
    ("name missing", with_("name", DELETE), "name", "required; add it"),
    ("unknown dataset", with_("datasets", ["digit"]), "datasets[0]", "did you mean 'digits'"),
    ("no datasets", with_("datasets", []), "datasets", "at least one"),
    ("no seeds", with_("seeds", []), "seeds", "at least one"),
    ("negative seed", with_("seeds", [0, -1]), "seeds[1]", "must be >= 0"),
    ("duplicate seed", with_("seeds", [1, 1]), "seeds[1]", "list each once"),
    ("no optimizers", with_("optimizers", {}), "optimizers", "at least one optimizer"),
    ("optimizers as a list", with_("optimizers", ["sgd", "sam"]), "optimizers", "e.g. {sgd: {}, sam: {}}"),
    ("unknown optimizer", with_("optimizers.adam", {}), "optimizers.adam", "use one of sgd, sam, asam, sharpreg"),
    ("negative rho", with_("optimizers.sam.rho", {"low": -0.1, "high": 0.2}), "optimizers.sam.rho.low",
     "must be >= 0"),
    ("rho for sgd", with_("optimizers.sgd.rho", 0.05), "optimizers.sgd.rho", "remove it, or use it with sam or asam or sharpreg"),
    ("lam for sam", with_("optimizers.sam.lam", 1.0), "optimizers.sam.lam", "remove it, or use it with sharpreg"),
    ("xi for sgd", with_("optimizers.sgd.xi", 0.1), "optimizers.sgd.xi", "remove it, or use it with sharpreg"),
    ("sharpreg without lam", with_("optimizers.sharpreg.lam", DELETE), "optimizers.sharpreg.lam",
     "required for sharpreg"),
    ("1 + lam - xi <= 0", with_("optimizers.sharpreg", {"lam": 0.1, "xi": {"choices": [0.5, 1.2]}}),
     "optimizers.sharpreg", "raise lam or lower xi"),
    ("range typo", with_("optimizers.sam.rho", {"lo": 0.01, "high": 0.2}), "optimizers.sam.rho.lo",
     "did you mean 'low'"),
    ("low > high", with_("train.lr", {"low": 0.5, "high": 0.1}), "train.lr.low", "swap them"),
    ("log with low 0", with_("optimizers.sam.rho", {"low": 0.0, "high": 0.2, "log": True}),
     "optimizers.sam.rho.low", "raise low or drop log"),
    ("log and step", with_("train.lr", {"low": 0.01, "high": 0.1, "log": True, "step": 0.01}), "train.lr.step",
     "drop one of them"),
    ("list instead of choices", with_("train.lr", [0.01, 0.1]), "train.lr", "{choices: [0.01, 0.1]}"),
    ("float epochs", with_("train.epochs", {"low": 1.5, "high": 4}), "train.epochs.low", "must be an integer"),
    ("momentum 1", with_("train.momentum", 1.0), "train.momentum", "must be < 1"),
    ("schedule typo", with_("train.schedule", "cosin"), "train.schedule", "did you mean 'cosine'"),
    ("range for a literal", with_("train.schedule", {"low": 0, "high": 1}), "train.schedule", "not a range"),
    ("duplicate choice", with_("train.batch_size", {"choices": [32, 32]}), "train.batch_size.choices[1]",
     "list each value once"),
    ("one objective", with_("objectives", {"test_acc": "max"}), "objectives", "at least 2 objectives"),
    ("bad direction", with_("objectives", {"test_acc": "up", "attack_acc": "min"}), "objectives.test_acc",
     "max or min"),
    ("unknown metric", with_("objectives", {"test_acc": "max", "atack_acc": "min"}),
     "objectives.atack_acc", "did you mean 'attack_acc'"),
    ("unknown attack", with_("attacks", ["los"]), "attacks[0]", "did you mean 'loss'"),
    ("trials 0", with_("trials", 0), "trials", "must be > 0"),
    ("trials missing for tpe", with_("trials", DELETE), "trials", "e.g. trials: 16"),
    ("max_concurrent 0", with_("max_concurrent", 0), "max_concurrent", "must be > 0"),
    ("negative cpu", with_("resources", {"cpu": -1}), "resources.cpu", "must be > 0"),
    ("negative gpu", with_("resources", {"gpu": -0.5}), "resources.gpu", "must be >= 0"),
    ("gpu 1.5", with_("resources", {"gpu": 1.5}), "resources.gpu", "use 2"),
    ("negative max_failures", with_("max_failures", -1), "max_failures", "must be >= 0"),
    ("negative checkpoint interval", with_("checkpoint_interval_s", -5), "checkpoint_interval_s", "must be >= 0"),
    ("objective no attack reports", with_("attacks", ["loss"], with_("objectives", {"test_acc": "max",
     "label_only_acc": "min"})), "objectives.label_only_acc", "add label_only"),
    ("unknown model", with_("train", {"model": "resnet"}), "train.model", "use one of fc, mlp"),
    ("sampler typo", with_("sampler", {"name": "tpee"}), "sampler.name", "did you mean 'tpe'"),
    ("nsga2 option on tpe", with_("sampler", {"name": "tpe", "population_size": 8}), "sampler.population_size",
     "remove it"),
    ("grid over a continuous range", GRID, "optimizers.sam.rho", "give {choices: [...]} or a step"),
    ("grid smaller than trials", with_("optimizers", {"sgd": {}, "sam": {"rho": {"choices": [0.05, 0.1]}}},
                                       with_("trials", 99, GRID)), "trials", "set trials <= 6"),
    ("mlflow file store", with_("storage", {"mlflow_uri": "./mlruns"}), "storage.mlflow_uri", "sqlite:///"),
    ("optuna url", with_("storage", {"optuna_url": "optuna.db"}), "storage.optuna_url", "postgresql://"),
]


def line_for(err: SpecError, path: str) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip().startswith(f"{path}:")]
    assert lines, f"no line for {path!r} in:\n{err}"
    return lines[0]


@pytest.mark.parametrize("spec,path,fix", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_spec_names_field_and_fix(spec, path, fix):
    with pytest.raises(SpecError) as info:
        parse_spec(spec, "bad.yaml")
    assert isinstance(info.value, ConfigError)
    assert str(info.value).startswith("bad.yaml: invalid sweep spec")
    assert fix in line_for(info.value, path)
    assert path in {p for p, _ in info.value.problems}


def test_every_problem_is_listed_one_per_line():
    with pytest.raises(SpecError) as info:
        load_spec(SPECS / "many_problems.yaml")
    paths = [p for p, _ in info.value.problems]
    assert set(paths) >= {"name", "datasets[0]", "optimizers.sgd.lam", "optimizers.sam.rho.low", "train.lr",
                          "train.schedule", "objectives", "objectives.test_acc", "trails"}
    assert len(str(info.value).splitlines()) == len(paths) + 1
    assert "optimizers.sam.rho.low: must be >= 0.0, got -0.1" in str(info.value)


@pytest.mark.parametrize("name,fix", [
    ("missing.yaml", "no such file"),
    ("bad_yaml.yaml", "invalid YAML"),
    ("duplicate_key.yaml", "duplicate key 'test_acc'"),
])
def test_file_problems_name_the_path(name, fix):
    with pytest.raises(SpecError) as info:
        load_spec(SPECS / name)
    assert str(SPECS / name) in str(info.value) and fix in str(info.value)


def test_directory_empty_file_and_list_are_errors(tmp_path):
    with pytest.raises(SpecError, match="cannot read the file"):
        load_spec(tmp_path)
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(SpecError, match="empty.yaml: a sweep spec is a mapping"):
        load_spec(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- name: x\n")
    with pytest.raises(SpecError, match="got list"):
        load_spec(tmp_path / "list.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_load(path):
    spec = load_spec(path)
    assert spec.n_trials >= 1 and len(spec.objectives) >= 2
    assert parse_spec(spec.model_dump()) == spec  # the compact dump reads back as the same spec


def test_examples_are_what_the_docs_promise():
    quick, table1 = load_spec(ROOT / "sweeps/quickstart.yaml"), load_spec(ROOT / "sweeps/paper_table1_purchase.yaml")
    assert quick.datasets == ("longtail",) and set(quick.optimizers) >= {"sgd", "sam", "sharpreg"}
    assert quick.dataset_options["longtail"]["binary"] and quick.repeats == 3 and quick.seeds == (0, 1, 2)
    assert quick.sampler.name == "grid" and quick.n_trials == 6 and quick.max_concurrent == 2
    assert table1.sampler.name == "grid" and table1.n_trials == 3 and table1.repeats == 5
    assert table1.optimizers["sam"].rho.fixed == 0.1
    assert [table1.optimizers["sharpreg"].params()[k].fixed for k in ("rho", "lam", "xi")] == [0.01, 1.5, 0.3]
    cifar = load_spec(ROOT / "sweeps/gpu_cifar100.yaml")
    assert cifar.resources.gpu == 0.25 and cifar.sampler.name == "nsga2" and cifar.train.epochs.fixed == 200
    assert cifar.storage.optuna_url.startswith("postgresql") and cifar.storage.mlflow_uri.startswith("http")


def test_yaml_reads_5e_minus_4_as_a_float(tmp_path):
    (tmp_path / "s.yaml").write_text("name: s\noptimizers: {sgd: {}}\ntrain: {weight_decay: 5e-4}\ntrials: 2\n")
    assert load_spec(tmp_path / "s.yaml").train.weight_decay.fixed == 5e-4


def test_hash_ignores_key_order_and_explicit_defaults():
    a = parse_spec(BASE)
    reordered = {**BASE, "optimizers": dict(reversed(list(BASE["optimizers"].items()))), "seeds": [1, 0]}
    explicit = {**BASE, "sampler": {"name": "tpe", "seed": 0}, "objectives": {"test_acc": "maximize",
                                                                             "attack_acc": "min"}}
    assert a.spec_hash() == parse_spec(reordered).spec_hash() == parse_spec(explicit).spec_hash()
    assert a.spec_hash() != parse_spec(with_("trials", 9)).spec_hash()
    assert list(parse_spec(reordered).optimizers) == ["sgd", "sam", "sharpreg"]
    assert parse_spec(reordered).seeds == (0, 1)


def test_fixed_fields_and_storage_defaults(tmp_path):
    spec = parse_spec(with_("optimizers", {"sam": {"rho": 0.1}}))
    fixed = spec.fixed_trial_fields()
    assert fixed["optimizer"] == "sam" and fixed["rho"] == 0.1 and fixed["dataset"] == "digits"
    assert "seed" not in fixed and fixed["epochs"] == 3
    TrialConfig(**fixed)  # the fixed part alone is a valid trial
    storage = spec.resolved_storage(tmp_path)
    assert storage.workdir == tmp_path / "runs" / "base"
    assert storage.optuna_url == f"sqlite:///{tmp_path}/runs/base/optuna.db"
    assert storage.mlflow_uri.endswith("/runs/base/mlflow.db") and storage.tune_storage.endswith("/tune")


def test_spec_is_frozen():
    spec = parse_spec(BASE)
    with pytest.raises(ValidationError):
        spec.trials = 3


def test_the_registries_are_built_from_the_catalog():
    from samprivacy import audit, catalog
    from samprivacy.learn import data, models, optim

    assert DATASET_NAMES == tuple(catalog.DATASETS) and set(data.DATASETS) == set(DATASET_NAMES)
    assert MODEL_NAMES == tuple(catalog.MODELS) and set(models.MODELS) == set(MODEL_NAMES)
    assert ATTACK_NAMES == tuple(catalog.ATTACKS)
    assert set(audit.ATTACKS) == {a for a, e in catalog.ATTACKS.items() if not e.needs_population}
    assert set(optim.PRESETS) == set(catalog.OPTIMIZERS)
    # every optimizer parameter is a TrialConfig field and a spec key
    from samprivacy.spec import OptimizerSpace
    assert set(catalog.OPTIMIZER_PARAMS) <= set(TrialConfig.model_fields) & set(OptimizerSpace.model_fields)


def test_a_relative_tune_storage_is_made_absolute(tmp_path):
    storage = parse_spec(with_("storage", {"tune_storage": "rel/tune"})).resolved_storage(tmp_path)
    assert storage.tune_storage == str(tmp_path / "rel" / "tune")


def test_repeats_runs_each_configuration_on_every_seed():
    base = {"name": "r", "optimizers": {"sgd": {}, "sam": {"rho": {"choices": [0.05, 0.1]}}},
            "sampler": {"name": "grid"}}
    spec = parse_spec({**base, "repeats": 3})
    assert spec.seeds == (0, 1, 2) and spec.searched_seeds == (0,)
    assert spec.grid_size() == 3 and spec.n_trials == 3  # configurations, not configurations x seeds
    assert parse_spec({**base, "repeats": 2, "seeds": [7, 3]}).seeds == (3, 7)
    assert parse_spec({**base, "seeds": [0, 1]}).grid_size() == 6  # without repeats a seed is a search dimension
    with pytest.raises(SpecError) as info:
        parse_spec({**base, "repeats": 3, "seeds": [0, 1]})
    assert info.value.problems == [("seeds", "with repeats: 3 every configuration runs on each seed, so list "
                                             "exactly 3 seeds (got 2), or leave seeds out for 0, 1, 2")]
    with pytest.raises(SpecError, match="repeats"):
        parse_spec({**base, "repeats": 0})


def test_validate_notes_a_space_smaller_than_trials(tmp_path, capsys):
    from samprivacy.cli import main

    path = tmp_path / "small.yaml"
    path.write_text("name: small\nseeds: [0, 1]\noptimizers: {sgd: {}}\ntrials: 6\n")
    assert main(["validate", str(path)]) == 0
    assert "holds 2 distinct configurations: the sweep ends once they are measured, before trials (6)" in \
        " ".join(capsys.readouterr().out.split())
    path.write_text("name: wide\noptimizers: {sgd: {}}\ntrain: {lr: {low: 0.01, high: 0.1}}\ntrials: 6\n")
    assert main(["validate", str(path)]) == 0 and "distinct configurations" not in capsys.readouterr().out
