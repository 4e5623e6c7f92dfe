"""The synthetic long-tailed mixture: Zipf subpopulation sizes, planted singletons and twins, determinism."""

import numpy as np
import pytest
import torch

from samprivacy.errors import ConfigError
from samprivacy.learn.data import SPLIT_NAMES, check_splits, load_dataset
from samprivacy.learn.data.longtail import zipf_sizes


@pytest.fixture(scope="module")
def longtail():
    return load_dataset("longtail", seed=0)


def test_shapes_kinds_and_split_sizes(longtail):
    assert longtail.x.shape == (3000, 32) and longtail.x.dtype == torch.float32
    assert longtail.y.dtype == torch.int64 and set(longtail.y.tolist()) == set(range(10))
    assert longtail.num_classes == 10 and longtail.feature_kind == "continuous"
    s = longtail.splits
    check_splits(s, 3000)
    assert [len(getattr(s, name)) for name in SPLIT_NAMES] == [600, 600, 600, 600, 600]


def test_subpopulation_sizes_are_zipf_shaped(longtail):
    sizes, sub = longtail.info["subpopulation_sizes"], longtail.info["subpopulation"]
    np.testing.assert_array_equal(np.bincount(sub, minlength=len(sizes)), sizes)
    per_class = sizes.reshape(10, 30)
    assert (np.diff(per_class, axis=1) <= 0).all()  # non-increasing with rank
    assert (per_class[:, 0] > 20 * per_class[:, -1]).all()  # a heavy head and a long tail
    # Below the top rank (which absorbs rounding) sizes follow rank**-zipf until the tail is clipped at 2.
    ranks = np.arange(2, 8)
    slope = np.polyfit(np.log(ranks), np.log(per_class[:, ranks - 1].mean(0)), 1)[0]
    assert -1.6 < slope < -1.0
    # Labels are constant within a subpopulation.
    np.testing.assert_array_equal(longtail.info["subpopulation_label"][sub], longtail.y.numpy())


def test_planted_singletons_have_one_training_example_and_a_held_out_twin(longtail):
    info, s = longtail.info, longtail.splits
    singletons, twins, sub = info["singletons"], info["singleton_twins"], info["subpopulation"]
    assert len(singletons) == len(twins) == (info["subpopulation_sizes"] == 2).sum() > 50
    np.testing.assert_array_equal(sub[singletons], sub[twins])
    members_per_sub = np.bincount(sub[s.train], minlength=len(info["subpopulation_sizes"]))
    assert (members_per_sub[sub[singletons]] == 1).all()
    assert np.isin(singletons, s.eval_members).all() and np.isin(twins, s.eval_nonmembers).all()


def test_seed_fixes_data_and_split_and_data_seed_fixes_only_the_data(longtail):
    again = load_dataset("longtail", seed=0)
    assert torch.equal(again.x, longtail.x)
    np.testing.assert_array_equal(again.splits.eval_members, longtail.splits.eval_members)
    other = load_dataset("longtail", seed=1)
    assert not torch.equal(other.x, longtail.x)
    resplit = load_dataset("longtail", seed=1, data_seed=0)
    assert torch.equal(resplit.x, longtail.x)
    assert not np.array_equal(resplit.splits.known_members, longtail.splits.known_members)


def test_options_change_the_mixture():
    d = load_dataset("longtail", n=500, classes=4, dim=6, subpopulations=10, zipf=2.0, noise=0.1)
    assert d.x.shape == (500, 6) and d.num_classes == 4
    check_splits(d.splits, 500)
    assert len(d.info["subpopulation_sizes"]) == 40


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(n=5), "`n` must be an integer >= 10, got 5"),
        (dict(classes=1), "`classes` must be an integer >= 2"),
        (dict(zipf=0.0), "`zipf` must be a finite number > 0"),
        (dict(noise=-1.0), "`noise` must be a finite number >= 0"),
        (dict(n=100, subpopulations=30), "too few for 30 subpopulations"),
        (dict(n=300, classes=2, subpopulations=60, zipf=3.0), "planted singletons do not fit"),
    ],
)
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset("longtail", **options)


def test_zipf_sizes_sum_and_floor():
    sizes = zipf_sizes(300, 30, 1.3)
    assert sizes.sum() == 300 and sizes.min() == 2 and sizes[0] == sizes.max()
