"""The registry and the embedded default (scikit-learn's digits): names, options, shapes, sizes, seeds."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from samprivacy.errors import ConfigError
from samprivacy.learn.data import DATASETS, SPLIT_NAMES, available_datasets, check_splits, dataset_options
from samprivacy.learn.data import load_dataset, read_dataset

NAMES = ["cifar10", "cifar100", "digits", "longtail", "purchase100", "texas100"]


def test_registry_lists_every_source():
    assert available_datasets() == NAMES
    assert sorted(DATASETS) == NAMES and all(callable(f) for f in DATASETS.values())


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ConfigError) as err:
        load_dataset("foo")
    assert str(err.value) == ("unknown dataset 'foo'; choose from: "
                              "cifar10, cifar100, digits, longtail, purchase100, texas100")


def test_unknown_option_names_the_option_and_the_choices():
    with pytest.raises(ConfigError, match=r"unknown option 'zipff' for dataset 'longtail'; choose from: n, classes"):
        load_dataset("longtail", zipff=2.0)
    with pytest.raises(ConfigError, match=r"unknown option 'n' for dataset 'digits'; choose from: \(none\)"):
        load_dataset("digits", n=10)
    assert dataset_options("longtail")["zipf"] == 1.3


@pytest.mark.parametrize("name", ["purchase100", "texas100", "cifar10", "cifar100"])
def test_file_sources_need_a_root(name):
    with pytest.raises(ConfigError, match=f"dataset '{name}' needs `root`"):
        load_dataset(name)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_digits_shapes_and_kinds(digits):
    assert digits.name == "digits" and digits.num_classes == 10 and digits.feature_kind == "continuous"
    assert digits.x.shape == (1797, 64) and digits.x.dtype == torch.float32
    assert digits.y.dtype == torch.int64 and set(digits.y.tolist()) == set(range(10))
    assert float(digits.x.min()) == 0.0 and float(digits.x.max()) == 1.0
    assert "load_digits" in digits.info["source"]


def test_digits_split_sizes(digits):
    s = digits.splits
    check_splits(s, 1797)
    assert {name: len(getattr(s, name)) for name in SPLIT_NAMES} == {
        "known_members": 400, "eval_members": 400, "known_nonmembers": 400, "eval_nonmembers": 400, "val": 197}
    assert len(s.train) == 800 and len(s.extra_members) == 0
    x, y = digits.subset("val")
    assert x.shape == (197, 64) and y.shape == (197,)


def test_seed_fixes_the_split(digits):
    again, other = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    for name in SPLIT_NAMES:
        np.testing.assert_array_equal(getattr(again.splits, name), getattr(digits.splits, name))
    assert not np.array_equal(other.splits.eval_members, digits.splits.eval_members)
    assert not np.array_equal(other.splits.val, digits.splits.val)
    assert torch.equal(again.x, digits.x)  # the data itself does not depend on the seed


def test_seed_must_be_a_non_negative_integer():
    with pytest.raises(ConfigError, match="`seed` must be a non-negative integer, got -3"):
        load_dataset("digits", seed=-3)


def test_a_linear_model_reaches_high_test_accuracy_on_digits(digits):
    # Cheap stand-in for "an MLP reaches > 0.9": even a linear softmax model does on these splits.
    from sklearn.linear_model import LogisticRegression

    x_tr, y_tr = digits.subset("train")
    x_te, y_te = digits.subset("test")
    model = LogisticRegression(max_iter=500).fit(x_tr.numpy(), y_tr.numpy())
    assert model.score(x_te.numpy(), y_te.numpy()) > 0.9


@pytest.mark.parametrize("name, options", [("digits", {}), ("longtail", {"n": 600, "subpopulations": 8})])
def test_read_dataset_is_load_dataset_as_numpy(name, options):
    arrays, tensors = read_dataset(name, seed=3, **options), load_dataset(name, seed=3, **options)
    assert isinstance(arrays.x, np.ndarray) and arrays.x.dtype == np.float32 and arrays.y.dtype == np.int64
    assert np.array_equal(arrays.x, tensors.x.numpy()) and np.array_equal(arrays.y, tensors.y.numpy())
    assert all(np.array_equal(getattr(arrays.splits, s), getattr(tensors.splits, s)) for s in SPLIT_NAMES)
    assert (arrays.name, arrays.num_classes, arrays.feature_kind) == (name, tensors.num_classes,
                                                                      tensors.feature_kind)


def test_a_sweeps_preflight_reads_its_data_without_importing_torch(tmp_path):
    """The driver checks every data file before a sweep starts; importing torch for that took most of the
    start (seconds). In a fresh interpreter: the preflight reads, refuses a bad file, and torch stays out."""
    (tmp_path / "purchase100.npz").write_bytes(b"not an archive")
    script = f"""
import sys
from samprivacy.errors import DataError
from samprivacy.spec import parse_spec
from samprivacy.sweep.runner import preflight
spec = {{"name": "p", "datasets": ["digits", "longtail"], "optimizers": {{"sgd": {{}}}}, "trials": 1}}
preflight(parse_spec(spec))
try:
    preflight(parse_spec({{**spec, "datasets": ["purchase100"], "data_root": {str(tmp_path)!r}}}))
    raise SystemExit("a malformed file passed")
except DataError as e:
    assert "purchase100.npz: not a readable .npz archive" in str(e), e
print("torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
