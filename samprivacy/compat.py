"""Every place samprivacy reaches past a library's public API, in one module, each with the test that fails, naming
what changed, when a release moves it (tests/test_compat.py). pyproject caps Ray and Optuna at the minor versions
these were checked against; lifting a cap means running those tests.

    clear_pending_trial_decisions   Ray Tune: the driver's per-trial decisions saved with the experiment state, which
                                    Tune restores as they were (no API clears them): resume clears a dead
                                    driver's
    drop_torn_searcher_state        Ray Tune: the searcher's snapshot files, removed when a kill tore them (Tune
                                    would refuse to restore the experiment)
    release_concurrency_limiter     Ray Tune: an earlier version's ConcurrencyLimiter state in the search generator's
                                    snapshot, set to pass every trial through
    tune_trials                     Ray Tune: the trials of the newest snapshot on storage, read as Tune restores them
    restore_deleted_checkpoints     Ray Tune: a checkpoint the newest snapshot names but Tune already deleted (a kill
                                    between the two), put back from the one that replaced it
    autoscaling_status              Ray: autoscaler v1's status in the GCS key-value store (no public reader)
    RUNTIME_ENV_LOGGER              Ray: the logger that prints every package upload of a job (silenced while submitting)
    sklearn_digits_file             scikit-learn: where its bundled digits data lies, read without importing
                                    scikit-learn (1.3 to 1.7 s in every process that loads the default dataset)

Ray is imported inside the functions, so modules that never call them do not pull it in.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from samprivacy.files import write_bytes_atomic

# TuneController.save_to_dir writes these keys under "runner_data" of experiment_state-*.json (Ray 2.60).
PENDING_DECISION_KEYS = ("_cached_trial_decisions", "_queued_trial_decisions")
RUNTIME_ENV_LOGGER = "ray._private.runtime_env.packaging"


def _experiment_files(experiment_path: str, prefix: str) -> tuple[Any, list[str]]:
    """(filesystem, paths sorted by name) of the experiment's files on storage whose names start with `prefix`.
    Tune names its snapshot files by the driver session's start, so the last path is the newest (Tune restores
    the last by name)."""
    import pyarrow.fs

    remote = "://" in experiment_path
    fs, root = pyarrow.fs.FileSystem.from_uri(experiment_path if remote else str(Path(experiment_path).resolve()))
    return fs, sorted(info.path for info in fs.get_file_info(pyarrow.fs.FileSelector(root))
                      if info.base_name.startswith(prefix))


def _read(fs: Any, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return stream.readall()


def _rewrite(fs: Any, experiment_path: str, path: str, data: bytes) -> None:
    """Replace a snapshot file whole: an object store's upload appears at once; a local file is renamed into place."""
    if "://" in experiment_path:
        with fs.open_output_stream(path) as stream:
            stream.write(data)
    else:
        write_bytes_atomic(path, data)


def _newest_experiment_state(experiment_path: str) -> tuple[Any, str, dict] | None:
    """(filesystem, path, contents) of the experiment's newest snapshot on storage: the one Tune restores; None
    where there is none."""
    fs, names = _experiment_files(experiment_path, "experiment_state-")
    names = [name for name in names if name.endswith(".json")]
    return (fs, names[-1], json.loads(_read(fs, names[-1]))) if names else None


def clear_pending_trial_decisions(experiment_path: str) -> bool:
    """Clear the per-trial decisions a stopped Tune driver had pending in the experiment's newest snapshot, before
    Tune restores it. A STOP decided for an attempt that errored (its worker killed while it saved a checkpoint)
    would otherwise stop the resumed attempt at its first checkpoint: the trial ends TERMINATED without its
    results. Returns whether there were any."""
    if (newest := _newest_experiment_state(experiment_path)) is None:
        return False
    fs, name, state = newest
    runner_data = state.get("runner_data", {})
    if not any(runner_data.get(key) for key in PENDING_DECISION_KEYS):
        return False
    runner_data.update({key: {} for key in PENDING_DECISION_KEYS})
    _rewrite(fs, experiment_path, name, json.dumps(state).encode())
    return True


SEARCHER_FILES = ("searcher-state-", "search_gen_state-")  # the searcher's and its generator's (both pickles)


def drop_torn_searcher_state(experiment_path: str) -> bool:
    """Remove the searcher's files from the experiment's storage when the newest of either is missing or does
    not load (a driver killed while Tune copied its first snapshot, or in the middle of a file). Tune restores
    the searcher only when both are whole, and otherwise fails the resume; without them it restores the
    experiment and a fresh searcher, whose book comes from the study and Tune's own record (tune_trials).
    Returns whether anything was removed."""
    import pickle

    listed = [_experiment_files(experiment_path, prefix) for prefix in SEARCHER_FILES]
    fs, files = listed[0][0], [path for _, paths in listed for path in paths]
    if not files:
        return False
    try:
        for _, paths in listed:
            pickle.loads(_read(fs, paths[-1]))  # IndexError where one of the two is missing
    except Exception:  # missing, truncated or half-written: any of them makes Tune's restore fail
        for path in files:
            fs.delete_file(path)
        return True
    return False


LIMITER_STATE = "name:ConcurrencyLimiter"  # SearchGenerator.save_to_dir's key for the limiter wrapping a searcher


def release_concurrency_limiter(experiment_path: str) -> bool:
    """A snapshot written before the sweep's searcher limited concurrency itself holds Tune's ConcurrencyLimiter
    limiting, with its own list of running trials; restored so, it drops the end of every trial missing from
    that list, and the searcher, which counts the running trials by Tune's record, then waits for it forever.
    Set the limiter in the newest search generator state to pass every call through, as a new experiment's
    does. Returns whether it had to."""
    from ray import cloudpickle

    fs, names = _experiment_files(experiment_path, SEARCHER_FILES[1])
    if not names:
        return False
    state = cloudpickle.loads(_read(fs, names[-1]))
    limiter = state.get(LIMITER_STATE)
    if not limiter or not limiter.get("_limit_concurrency"):
        return False
    limiter.update(_limit_concurrency=False, live_trials=set(), num_unfinished_live_trials=0)
    _rewrite(fs, experiment_path, names[-1], cloudpickle.dumps(state))
    return True


def tune_trials(experiment_path: str) -> dict[str, tuple[str, dict]] | None:
    """The trials of the experiment's newest snapshot on storage, as Tune will restore them: trial id -> (status,
    config). None where there is no snapshot. (Tune copies each snapshot to storage after writing it, file by file
    and in the background: a driver killed meanwhile can leave storage with the searcher's state of another
    moment than this one, so what Tune restores is read from here.)"""
    if (newest := _newest_experiment_state(experiment_path)) is None:
        return None
    trials = {}
    for trial_state, _ in newest[2].get("trial_data", []):  # (the trial's JSON state, its runtime metadata)
        trial = json.loads(trial_state)
        trials[trial["trial_id"]] = (trial["status"], trial.get("config") or {})
    return trials


CHECKPOINT_PREFIX = "checkpoint_"  # StorageContext._make_checkpoint_dir_name: checkpoint_000003 (Ray 2.60)


def restore_deleted_checkpoints(experiment_path: str) -> dict[str, str | None]:
    """Put back, before Tune restores the experiment, each checkpoint that its newest snapshot names for a trial
    that runs again but that is no longer on storage. Returns trial id -> the checkpoint folder put in place of
    its missing one (None: an empty one) for each trial put right.

    With `CheckpointConfig(num_to_keep=1)` Tune deletes a trial's checkpoint as soon as it records the next one,
    while the snapshot that names the new one reaches storage later, in the background. A driver killed between
    the two leaves a snapshot whose trial cannot be restored ("does not exist on storage anymore"): every retry
    fails the same way and the trial ends in ERROR. The checkpoint that replaced it is on storage (a trial
    reports a checkpoint only once it is written there, and it is deleted only when a newer one is recorded), so
    the oldest checkpoint after the missing one is copied into its place: the trial goes on from there, and its
    epochs before it are in MLflow already (a trial logs its curves before it reports a checkpoint). With none
    after it (something else deleted them), an empty checkpoint is left in its place: the trial finds no state
    in it and trains from its first epoch again."""
    import pyarrow.fs
    from ray.tune.experiment import Trial

    if (newest := _newest_experiment_state(experiment_path)) is None:
        return {}
    fs, snapshot, state = newest
    experiment = PurePosixPath(snapshot).parent  # where the trials' folders are now (the snapshot's paths may be old)
    repaired: dict[str, str | None] = {}
    for trial_state, metadata in state.get("trial_data", []):
        trial = Trial.from_json_state(trial_state, stub=True)
        trial.restore_run_metadata(metadata)
        if trial.status == Trial.TERMINATED or trial.checkpoint is None:
            continue
        # where the experiment was; Tune maps it into the experiment's folder now by the trial's folder name
        named = PurePosixPath(trial.checkpoint.path)
        folder = experiment / named.parent.name
        missing = str(folder / named.name)
        if fs.get_file_info(missing).type != pyarrow.fs.FileType.NotFound:
            continue
        later = sorted(info.path for info in fs.get_file_info(pyarrow.fs.FileSelector(str(folder), allow_not_found=True))
                       if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(CHECKPOINT_PREFIX)
                       and info.base_name > named.name)
        _put_folder(fs, later[0] if later else None, missing)
        repaired[trial.trial_id] = PurePosixPath(later[0]).name if later else None
    return repaired


def _put_folder(fs: Any, source: str | None, target: str) -> None:
    """A copy of folder `source` (None: an empty folder) at `target`, whole or not at all: on a local disk it is
    made beside `target` and renamed into place; an object store shows each uploaded object whole."""
    import pyarrow.fs

    if not isinstance(fs, pyarrow.fs.LocalFileSystem):
        if source is None:
            fs.create_dir(target)
        else:
            pyarrow.fs.copy_files(source, target, source_filesystem=fs, destination_filesystem=fs,
                                  use_threads=False)  # as Ray copies to S3 (threads can hang there: arrow#32372)
        return
    staging = Path(target).parent / f".{Path(target).name}.{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)  # the permissions Tune's own folders get
        if source is not None:
            shutil.copytree(source, staging, dirs_exist_ok=True)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def autoscaling_status() -> dict | None:
    """Autoscaler v1's last status report (the GCS key Ray's `ray status` reads), or None where there is none."""
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    status = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    return json.loads(status) if status else None


def sklearn_digits_file() -> Path | None:
    """scikit-learn's bundled digits table (`sklearn/datasets/data/digits.csv.gz`: 64 pixel counts then the
    label, per line), found without importing scikit-learn; None where it is not there (the caller then asks
    `sklearn.datasets.load_digits`)."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None
