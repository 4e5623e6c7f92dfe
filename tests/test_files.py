"""files.py: a crash never leaves half a file, nor a temporary one."""

import json

import pytest
import torch

from samprivacy.files import save_torch_atomic, write_json_atomic


def test_json_is_written_whole_with_no_temporary_file_left(tmp_path):
    path = write_json_atomic(tmp_path / "deep" / "a.json", {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_one(tmp_path):
    path = write_json_atomic(tmp_path / "a.json", {"old": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"new": object()})  # not serialisable, half-way through the document
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_torch_state_round_trips(tmp_path):
    state = {"w": torch.arange(4.0), "epoch": 3}
    loaded = torch.load(save_torch_atomic(state, tmp_path / "s.pt"), weights_only=True)
    assert torch.equal(loaded["w"], state["w"]) and loaded["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]
