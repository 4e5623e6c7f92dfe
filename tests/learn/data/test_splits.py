"""The generic member / non-member partition: disjoint, balanced, deterministic by seed, clear size errors."""

import numpy as np
import pytest

from samprivacy.errors import ConfigError
from samprivacy.learn.data import SPLIT_NAMES, Splits, check_splits, make_splits, random_pools

ALL = SPLIT_NAMES + ("extra_members",)


def sizes(s: Splits) -> dict[str, int]:
    return {name: len(getattr(s, name)) for name in ALL}


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_partition_is_disjoint_balanced_and_sized(seed):
    members, nonmembers = np.arange(0, 100), np.arange(100, 250)
    s = make_splits(members, nonmembers, n_known=30, n_eval=40, n_val=50, seed=seed)
    check_splits(s, 250)
    assert sizes(s) == {"known_members": 30, "eval_members": 40, "known_nonmembers": 30, "eval_nonmembers": 40,
                        "val": 50, "extra_members": 30}
    assert set(s.train) == set(members)  # every member is trained on, whichever set it is in
    assert np.isin(s.test, nonmembers).all() and np.isin(s.val, nonmembers).all()
    for name in ALL:
        assert getattr(s, name).dtype == np.int64 and np.all(np.diff(getattr(s, name)) > 0)


def test_val_defaults_to_every_nonmember_left_over():
    s = make_splits(np.arange(20), np.arange(20, 50), n_known=10, n_eval=10, seed=0)
    assert len(s.val) == 10 and len(s.extra_members) == 0
    assert sorted(np.concatenate([s.test, s.val])) == list(range(20, 50))


def test_same_seed_same_arrays_and_different_seed_different_split():
    args = (np.arange(200), np.arange(200, 500))
    a, b, c = (make_splits(*args, n_known=50, n_eval=50, seed=seed) for seed in (3, 3, 4))
    for name in ALL:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.eval_members, c.eval_members)
    assert not np.array_equal(a.val, c.val)


def test_random_pools_is_a_seeded_partition():
    m, n = random_pools(50, 20, seed=5)
    assert len(m) == 20 and sorted(np.concatenate([m, n])) == list(range(50))
    np.testing.assert_array_equal(m, random_pools(50, 20, seed=5)[0])
    assert not np.array_equal(m, random_pools(50, 20, seed=6)[0])


def test_pinned_examples_land_in_the_evaluation_sets():
    pin_m, pin_n = np.array([3, 5]), np.array([60, 61, 62])
    for seed in range(5):
        s = make_splits(np.arange(50), np.arange(50, 100), n_known=10, n_eval=10, seed=seed,
                        pin_eval_members=pin_m, pin_eval_nonmembers=pin_n)
        check_splits(s, 100)
        assert np.isin(pin_m, s.eval_members).all() and np.isin(pin_n, s.eval_nonmembers).all()
    with pytest.raises(ConfigError, match="pins 3 examples into an evaluation set of n_eval = 2"):
        make_splits(np.arange(50), np.arange(50, 100), n_known=2, n_eval=2, seed=0, pin_eval_nonmembers=pin_n)


@pytest.mark.parametrize(
    ("n_members", "n_nonmembers", "kwargs", "message"),
    [
        (5, 50, dict(n_known=3, n_eval=3), "too few members: .* = 6, but the member pool holds 5"),
        (50, 6, dict(n_known=3, n_eval=3), "too few non-members: .* needs 7, but the non-member pool holds 6"),
        (50, 50, dict(n_known=10, n_eval=10, n_val=31), "too few non-members"),
        (50, 50, dict(n_known=0, n_eval=10), "`n_known` must be >= 1, got 0"),
        (50, 50, dict(n_known=5, n_eval=0), "`n_eval` must be >= 1, got 0"),
    ],
)
def test_too_small_data_gives_config_error(n_members, n_nonmembers, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_splits(np.arange(n_members), n_members + np.arange(n_nonmembers), seed=0, **kwargs)


def test_bad_pools_and_seeds_are_rejected():
    with pytest.raises(ValueError, match="overlap"):
        make_splits(np.arange(10), np.arange(5, 30), n_known=2, n_eval=2, seed=0)
    with pytest.raises(ValueError, match="duplicate"):
        make_splits(np.array([1, 1, 2, 3, 4]), np.arange(10, 30), n_known=2, n_eval=2, seed=0)
    for seed in (-1, 1.5, "0", True):
        with pytest.raises(ConfigError, match="`seed` must be a non-negative integer"):
            make_splits(np.arange(10), np.arange(10, 30), n_known=2, n_eval=2, seed=seed)


def test_check_splits_catches_overlap_and_imbalance():
    good = make_splits(np.arange(20), np.arange(20, 50), n_known=5, n_eval=5, seed=0)
    fields = {name: getattr(good, name) for name in ALL}
    with pytest.raises(ValueError, match="overlap"):
        check_splits(Splits(**{**fields, "val": np.append(good.val, good.eval_members[0])}), 50)
    with pytest.raises(ValueError, match="evaluation sets are not balanced"):
        check_splits(Splits(**{**fields, "eval_nonmembers": good.eval_nonmembers[1:]}), 50)


def test_save_load_round_trip_keeps_extra_members(tmp_path):
    s = make_splits(np.arange(100), np.arange(100, 150), n_known=10, n_eval=10, seed=2)
    loaded = Splits.load(s.save(tmp_path / "splits.npz"))
    for name in ALL:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(s, name))
    # Files written before extra_members existed still load, with none.
    np.savez(tmp_path / "old.npz", **{name: getattr(s, name) for name in SPLIT_NAMES})
    assert len(Splits.load(tmp_path / "old.npz").extra_members) == 0
