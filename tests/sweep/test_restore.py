"""What the runner does to a Tune experiment before restoring it (no Ray started)."""

from __future__ import annotations

import json

from samprivacy.sweep.runner import _forget_stale_decisions


def test_a_dead_driver_s_pending_trial_decisions_are_forgotten_before_a_restore(tmp_path):
    # Ray 2.60 saved {trial: STOP} for an attempt whose worker was killed while saving; restored, that STOP
    # ended the resumed attempt at its first checkpoint (seen in the errored-trial resume test)
    runner_data = {"_iteration": 213, "_has_errored": True, "_cached_trial_decisions": {"b2042ddc": "STOP"},
                   "_queued_trial_decisions": {"b2042ddc": "STOP"}, "_stopper": {"_type": "CLOUDPICKLE_FALLBACK"}}
    older = {"runner_data": {"_cached_trial_decisions": {"x": "STOP"}}, "trial_data": []}
    (tmp_path / "experiment_state-2026-11-30_18-53-01.json").write_text(json.dumps(older))
    newest = tmp_path / "experiment_state-2026-11-30_18-53-19.json"
    newest.write_text(json.dumps({"runner_data": runner_data, "trial_data": [["{}", "{}"]], "stats": {"a": 1}}))

    _forget_stale_decisions(str(tmp_path))

    state = json.loads(newest.read_text())
    assert state["runner_data"] == runner_data | {"_cached_trial_decisions": {}, "_queued_trial_decisions": {}}
    assert state["trial_data"] == [["{}", "{}"]] and state["stats"] == {"a": 1}
    # Tune restores the newest snapshot only: the older one is left as it was
    assert json.loads((tmp_path / "experiment_state-2026-11-30_18-53-01.json").read_text()) == older
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment_state-2026-11-30_18-53-01.json",
                                                         newest.name]  # no temporary file left


def test_a_folder_without_a_snapshot_is_left_alone(tmp_path):
    _forget_stale_decisions(str(tmp_path))
    assert list(tmp_path.iterdir()) == []
