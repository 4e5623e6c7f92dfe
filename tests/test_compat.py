"""samprivacy.compat: each reach past a library's public API, checked against the installed library, so a release
that moves it fails here, by name, before a user's resume does."""

from __future__ import annotations

import inspect
import json
import logging

import numpy as np
import pytest

from samprivacy import compat


def test_tune_still_saves_its_pending_trial_decisions_under_these_keys():
    from ray.tune.execution.tune_controller import TuneController

    where = "see samprivacy.compat.clear_pending_trial_decisions"
    init, state = inspect.getsource(TuneController.__init__), inspect.getsource(TuneController.__getstate__)
    for key in compat.PENDING_DECISION_KEYS:
        assert f"self.{key} = " in init, f"Ray Tune's TuneController no longer keeps {key}; {where}"
        assert f'"{key}"' not in state, f"Ray Tune no longer saves {key} with the experiment; {where}"
    assert '"runner_data": self.__getstate__()' in inspect.getsource(TuneController.save_to_dir), (
        f"Ray Tune no longer saves the controller's state as runner_data; {where}")


def test_a_dead_driver_s_pending_trial_decisions_are_cleared_before_a_restore(tmp_path):
    # Ray 2.60 saved {trial: STOP} for an attempt whose worker was killed while saving; restored, that STOP
    # ended the resumed attempt at its first checkpoint (seen in the errored-trial resume test)
    runner_data = {"_iteration": 213, "_has_errored": True, "_cached_trial_decisions": {"b2042ddc": "STOP"},
                   "_queued_trial_decisions": {"b2042ddc": "STOP"}, "_stopper": {"_type": "CLOUDPICKLE_FALLBACK"}}
    older = {"runner_data": {"_cached_trial_decisions": {"x": "STOP"}}, "trial_data": []}
    (tmp_path / "experiment_state-2026-11-30_18-53-01.json").write_text(json.dumps(older))
    newest = tmp_path / "experiment_state-2026-11-30_18-53-19.json"
    newest.write_text(json.dumps({"runner_data": runner_data, "trial_data": [["{}", "{}"]], "stats": {"a": 1}}))

    assert compat.clear_pending_trial_decisions(str(tmp_path))

    state = json.loads(newest.read_text())
    assert state["runner_data"] == runner_data | {"_cached_trial_decisions": {}, "_queued_trial_decisions": {}}
    assert state["trial_data"] == [["{}", "{}"]] and state["stats"] == {"a": 1}
    # Tune restores the newest snapshot only: the older one is left as it was
    assert json.loads((tmp_path / "experiment_state-2026-11-30_18-53-01.json").read_text()) == older
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment_state-2026-11-30_18-53-01.json",
                                                         newest.name]  # no temporary file left
    assert not compat.clear_pending_trial_decisions(str(tmp_path))  # nothing pending now


def test_a_folder_without_a_snapshot_is_left_alone(tmp_path):
    assert not compat.clear_pending_trial_decisions(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_the_trials_tune_restores_are_read_from_its_newest_snapshot_as_tune_writes_them(tmp_path):
    """compat.tune_trials reads trial_data as the installed Ray Tune writes it (Trial.get_json_state)."""
    from ray.tune.experiment import Trial

    def state(*trials: Trial) -> str:
        return json.dumps({"trial_data": [list(t.get_json_state()) for t in trials], "runner_data": {}})

    running = Trial("fn", config={"optuna_trial": 3, "seed": 1}, trial_id="abc", stub=True)
    ended = Trial("fn", config={"optuna_trial": 2, "seed": 0}, trial_id="def", stub=True)
    ended.set_status(Trial.TERMINATED)
    (tmp_path / "experiment_state-2026-12-07_10-00-00.json").write_text(state(ended))
    (tmp_path / "experiment_state-2026-12-07_10-00-05.json").write_text(state(ended, running))
    assert compat.tune_trials(str(tmp_path)) == {"def": ("TERMINATED", {"optuna_trial": 2, "seed": 0}),
                                                 "abc": ("PENDING", {"optuna_trial": 3, "seed": 1})}
    (tmp_path / "none").mkdir()
    assert compat.tune_trials(str(tmp_path / "none")) is None  # no snapshot


def test_a_checkpoint_tune_deleted_before_its_snapshot_said_so_is_put_back_from_the_one_after_it(tmp_path):
    """Tune (num_to_keep=1) deletes a trial's checkpoint as it records the next, and the snapshot naming the next
    reaches storage later: a kill between leaves a snapshot naming a deleted checkpoint, and the restored trial
    errors on every retry (seen in the killed-driver drill). Written here as the installed Tune writes trials;
    the snapshot was written where the experiment lay before (moved/exp): the trials' folders are found here."""
    from ray.train._internal.session import _TrainingResult
    from ray.train._internal.storage import StorageContext
    from ray.tune import Checkpoint
    from ray.tune.experiment import Trial

    assert StorageContext._make_checkpoint_dir_name(3) == f"{compat.CHECKPOINT_PREFIX}000003", (
        "Ray Tune names checkpoint folders differently; see samprivacy.compat.restore_deleted_checkpoints")
    experiment = tmp_path / "exp"

    def trial(trial_id: str, status: str, named: int | None, on_storage: dict[int, bytes]) -> Trial:
        made = Trial("fn", trial_id=trial_id, stub=True, storage=StorageContext(
            storage_path=str(tmp_path / "moved"), experiment_dir_name="exp", trial_dir_name=f"t_{trial_id}"))
        made.create_placement_group_factory()
        if named is not None:
            path = str(tmp_path / "moved" / "exp" / f"t_{trial_id}" / f"checkpoint_{named:06d}")
            made.on_checkpoint(_TrainingResult(checkpoint=Checkpoint(path), metrics={"epoch": named}))
        made.set_status(status)
        for index, data in on_storage.items():
            (experiment / f"t_{trial_id}" / f"checkpoint_{index:06d}").mkdir(parents=True)
            (experiment / f"t_{trial_id}" / f"checkpoint_{index:06d}" / "state.pt").write_bytes(data)
        return made

    trials = [trial("a", Trial.RUNNING, 1, {2: b"epoch 2", 3: b"epoch 3, being written"}),
              trial("b", Trial.ERROR, 4, {}),  # none after it either: it starts over
              trial("c", Trial.TERMINATED, 1, {2: b"x"}),  # ended: not restored, left alone
              trial("d", Trial.PENDING, 1, {1: b"whole"}),  # on storage: left alone
              trial("e", Trial.PENDING, None, {})]  # never checkpointed
    snapshot = experiment / "experiment_state-2026-12-07_22-00-00.json"
    snapshot.write_text(json.dumps({"trial_data": [list(t.get_json_state()) for t in trials], "runner_data": {}}))

    assert compat.restore_deleted_checkpoints(str(experiment)) == {"a": "checkpoint_000002", "b": None}
    assert (experiment / "t_a" / "checkpoint_000001" / "state.pt").read_bytes() == b"epoch 2"  # the oldest after it
    assert (experiment / "t_a" / "checkpoint_000002" / "state.pt").read_bytes() == b"epoch 2"  # still there
    assert list((experiment / "t_b" / "checkpoint_000004").iterdir()) == []
    assert not (experiment / "t_c" / "checkpoint_000001").exists()
    assert sorted(p.name for p in (experiment / "t_a").iterdir()) == [f"checkpoint_00000{i}" for i in (1, 2, 3)]
    assert compat.restore_deleted_checkpoints(str(experiment)) == {}  # nothing missing now
    (tmp_path / "none").mkdir()
    assert compat.restore_deleted_checkpoints(str(tmp_path / "none")) == {}  # no snapshot


def test_a_torn_or_half_copied_searcher_state_is_removed_so_tune_restores_the_experiment(tmp_path):
    """Tune restores its searcher only from both files whole; a kill while it copied them to storage leaves one
    missing or cut short, and Tune's restore then fails. Without either, Tune starts a fresh searcher."""
    import pickle

    from ray.tune.search import Searcher
    from ray.tune.search.search_generator import SearchGenerator

    assert [Searcher.CKPT_FILE_TMPL, SearchGenerator.CKPT_FILE_TMPL] == [f"{p}{{}}.{x}" for p, x in
                                                                        zip(compat.SEARCHER_FILES, ("pkl", "json"))]
    searcher = tmp_path / "searcher-state-2026-12-07_10-00-00.pkl"
    generator = tmp_path / "search_gen_state-2026-12-07_10-00-00.json"
    experiment = tmp_path / "experiment_state-2026-12-07_10-00-00.json"
    experiment.write_text("{}")
    generator.write_bytes(pickle.dumps({"counter": 2}))
    searcher.write_bytes(pickle.dumps({"live": {"t0": (0, 1)}}))
    assert not compat.drop_torn_searcher_state(str(tmp_path))  # both whole: left alone
    searcher.write_bytes(pickle.dumps({"live": {"t0": (0, 1)}})[:-3])  # cut short
    assert compat.drop_torn_searcher_state(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [experiment.name]
    generator.write_bytes(pickle.dumps({"counter": 2}))  # the generator's file made it, the searcher's did not
    assert compat.drop_torn_searcher_state(str(tmp_path)) and not generator.exists()
    assert not compat.drop_torn_searcher_state(str(tmp_path))  # nothing of the searcher's: nothing to do


def test_an_earlier_version_s_limiter_is_restored_passing_every_trial_s_end_through(tmp_path):
    """An earlier version let Tune's ConcurrencyLimiter limit, with its own list of running trials; restored as
    saved, it drops the end of a trial missing from that list (one its stale list lost), and the searcher,
    which now counts running trials itself, waits for that end forever."""
    import pickle

    from ray.tune.search import ConcurrencyLimiter, Searcher
    from ray.tune.search.search_generator import SearchGenerator

    class Book(Searcher):
        def __init__(self, limits: bool):
            super().__init__()
            self.limits, self.ended = limits, []

        def set_max_concurrency(self, max_concurrent: int) -> bool:
            return self.limits

        def suggest(self, trial_id):
            return {"x": 1}

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.ended.append(trial_id)

        def save(self, checkpoint_path):
            with open(checkpoint_path, "wb") as f:
                pickle.dump({}, f)

        def restore(self, checkpoint_path):
            pass

    old = SearchGenerator(ConcurrencyLimiter(Book(limits=False), max_concurrent=1))
    old.searcher.suggest("t0")  # the old limiter's list: t0 (its list lost t1, which Tune runs again)
    old.save_to_dir(str(tmp_path), session_str="2026-12-07_10-00-00")
    assert compat.release_concurrency_limiter(str(tmp_path))
    assert not compat.release_concurrency_limiter(str(tmp_path))  # once is enough

    book = Book(limits=True)  # this version's searcher: it limits itself
    new = SearchGenerator(ConcurrencyLimiter(book, max_concurrent=1))
    new.restore_from_dir(str(tmp_path))
    new.searcher.on_trial_complete("t1")
    assert book.ended == ["t1"]  # before: dropped, since t1 is not in the old list
    assert new.searcher.suggest("t2") == {"x": 1}  # and the old list no longer holds the one slot


def test_ray_still_has_the_autoscaling_status_key_and_reader():
    try:
        from ray._private import ray_constants
        from ray.experimental.internal_kv import _internal_kv_get
    except ImportError as exc:
        pytest.fail(f"Ray moved what samprivacy.compat.autoscaling_status reads: {exc}")
    assert isinstance(ray_constants.DEBUG_AUTOSCALING_STATUS, str), (
        "ray._private.ray_constants.DEBUG_AUTOSCALING_STATUS is gone; see samprivacy.compat.autoscaling_status")
    assert list(inspect.signature(_internal_kv_get).parameters)[0] == "key", (
        "ray.experimental.internal_kv._internal_kv_get changed its signature; see samprivacy.compat")


def test_ray_s_runtime_env_logger_is_still_the_one_that_prints_uploads():
    import ray._private.runtime_env.packaging as packaging

    assert packaging.__name__ == compat.RUNTIME_ENV_LOGGER
    assert "logging.getLogger(__name__)" in inspect.getsource(packaging), (
        f"{compat.RUNTIME_ENV_LOGGER} no longer logs under its module name; see samprivacy.compat")
    assert isinstance(logging.getLogger(compat.RUNTIME_ENV_LOGGER), logging.Logger)


def test_scikit_learn_s_digits_file_is_still_where_the_digits_loader_reads_it():
    from sklearn.datasets import load_digits

    from samprivacy.compat import sklearn_digits_file
    from samprivacy.learn.data.digits import _read_digits

    assert sklearn_digits_file() is not None, "scikit-learn moved datasets/data/digits.csv.gz: see compat.py"
    pixels, labels = _read_digits()
    bunch = load_digits()
    assert np.array_equal(pixels, bunch.data) and np.array_equal(labels, bunch.target)
    assert pixels.dtype == bunch.data.dtype and labels.dtype == bunch.target.dtype
