"""CIFAR-10/100 from tiny fixtures in the python-version archive layout; nothing downloads."""

import os
import pickle

import numpy as np
import pytest
import torch

from samprivacy.errors import DataError
from samprivacy.learn.data import SPLIT_NAMES, check_splits, load_dataset
from samprivacy.learn.data.cifar import cifar_sizes


@pytest.mark.parametrize(("kind", "classes"), [("cifar10", 10), ("cifar100", 100)])
def test_fake_cifar_loads_as_normalised_images(fake_cifar, kind, classes):
    root, folder = fake_cifar(kind)
    ds = load_dataset(kind, root=root, seed=0)
    assert ds.x.shape == (60, 3, 32, 32) and ds.x.dtype == torch.float32
    assert ds.y.dtype == torch.int64 and int(ds.y.max()) < classes
    assert ds.num_classes == classes and ds.feature_kind == "image"
    train = ds.x[:40]  # normalised by the training images' per-channel statistics
    assert torch.allclose(train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(train.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)
    assert ds.info["source"] == str(folder) and ds.info["md5_verified"] is False


def test_pixels_and_labels_keep_torchvisions_layout(fake_cifar):
    root, folder = fake_cifar("cifar10")
    with open(folder / "data_batch_1", "rb") as f:
        entry = pickle.load(f)
    ds = load_dataset("cifar10", root=root)
    mean, std = (torch.tensor(ds.info[k]).view(3, 1, 1) for k in ("mean", "std"))
    pixels = (ds.x[:8] * std + mean) * 255  # undo the normalisation
    expected = torch.from_numpy(entry["data"].reshape(8, 3, 32, 32).astype(np.float32))
    assert torch.allclose(pixels, expected, atol=1e-2)
    assert ds.y[:8].tolist() == entry["labels"]


def test_split_members_are_training_images_and_sets_are_balanced(fake_cifar):
    root, _ = fake_cifar("cifar10")  # 40 training images, 20 test images
    s = load_dataset("cifar10", root=root, seed=0).splits
    check_splits(s, 60)
    assert (s.train < 40).all() and len(s.train) == 40  # every training image is trained on
    assert (np.concatenate([s.test, s.val]) >= 40).all()
    assert [len(getattr(s, n)) for n in SPLIT_NAMES] == [5, 10, 5, 10, 5]
    other = load_dataset("cifar10", root=root, seed=1).splits
    assert not np.array_equal(other.eval_members, s.eval_members)


def test_full_size_split_rule():
    assert cifar_sizes(10_000) == {"n_eval": 5_000, "n_known": 2_500, "n_val": 2_500}


def test_python2_style_pickles_load(fake_cifar):
    root, _ = fake_cifar("cifar100", protocol=2)
    assert load_dataset("cifar100", root=root).x.shape == (60, 3, 32, 32)


def test_missing_root_says_how_to_get_the_data(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", root=tmp_path / "nowhere")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "pass --download to fetch it" in message and "`cifar-10-batches-py`" in message
    assert not (tmp_path / "nowhere").exists()  # download=False touches nothing


def test_missing_or_corrupt_batch_names_the_file(fake_cifar):
    root, folder = fake_cifar("cifar10")
    (folder / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=f"{folder / 'test_batch'}: cannot read as a CIFAR python-version pickle"):
        load_dataset("cifar10", root=root)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match=f"{folder / 'test_batch'}: missing"):
        load_dataset("cifar10", root=root)


def test_wrong_shapes_and_labels_are_data_errors(fake_cifar):
    root, folder = fake_cifar("cifar10")
    entry = {"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(entry))
    with pytest.raises(DataError, match=r"data_batch_2: 'data' has shape \(4, 100\) dtype uint8; expected \(N, 3072\)"):
        load_dataset("cifar10", root=root)
    entry = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(entry))
    with pytest.raises(DataError, match=r"data_batch_2: expected 2 labels .* in 0..9"):
        load_dataset("cifar10", root=root)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_pickles_that_would_run_code_are_refused(fake_cifar):
    root, folder = fake_cifar("cifar10")
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": _Payload(), "labels": []}))
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset("cifar10", root=root)
