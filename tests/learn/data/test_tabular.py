"""Purchase-100 and Texas-100 from small files in each canonical format; malformed files give DataError."""

import numpy as np
import pytest
import torch

from samprivacy.errors import ConfigError, DataError
from samprivacy.learn.data import SPLIT_NAMES, check_splits, load_dataset
from samprivacy.learn.data import purchase, texas
from samprivacy.learn.data._tabular import selena_sizes

from tests.learn.conftest import binary_table, write_csv

CITATION = "canonical data: Shokri et al. 2017 Purchase-100"


def assert_loaded(ds, x, y, n_features):
    assert ds.x.shape == (len(y), n_features) and ds.x.dtype == torch.float32
    assert ds.y.dtype == torch.int64 and ds.num_classes == 100 and ds.feature_kind == "binary"
    np.testing.assert_array_equal(ds.x.numpy(), x)
    np.testing.assert_array_equal(ds.y.numpy(), y)  # 0-based, whatever the file's convention
    check_splits(ds.splits, len(y))


def test_purchase_raw_csv(purchase_raw):
    root, x, y = purchase_raw()
    ds = load_dataset("purchase100", root=root, seed=0)
    assert_loaded(ds, x, y, 600)
    assert ds.info["source"] == str(root / "dataset_purchase") and ds.info["format"] == "raw text"
    # 60 rows scale SELENA's 19,732 / 29,599 of 197,324 to 6 members and 9 reference rows.
    assert [len(getattr(ds.splits, n)) for n in SPLIT_NAMES] == [3, 3, 3, 3, 6]


@pytest.mark.parametrize(("xkey", "ykey", "one_hot", "base"),
                         [("features", "labels", False, 0), ("X", "Y", True, 0), ("x", "y", False, 1)])
def test_purchase_npz_key_conventions(tmp_path, xkey, ykey, one_hot, base):
    x, y = binary_table(60, 600)
    labels = np.eye(100, dtype=np.int64)[y] if one_hot else y + base
    np.savez(tmp_path / "purchase100.npz", **{xkey: x, ykey: labels})
    assert_loaded(load_dataset("purchase100", root=tmp_path), x, y, 600)
    # root may also name the file itself
    assert_loaded(load_dataset("purchase100", root=tmp_path / "purchase100.npz"), x, y, 600)


def test_purchase_selena_npy_pair(tmp_path):
    x, y = binary_table(60, 600)
    np.save(tmp_path / "X.npy", x.astype(np.float64))
    np.save(tmp_path / "Y.npy", y.astype(np.int32))
    ds = load_dataset("purchase100", root=tmp_path)
    assert_loaded(ds, x, y, 600)
    assert ds.info["format"] == "npy"


def test_texas_raw_files(texas_raw):
    root, x, y = texas_raw()
    ds = load_dataset("texas100", root=root, seed=0)
    assert_loaded(ds, x, y, 6169)
    assert ds.info["source"] == str(root / "texas" / "100" / "feats")
    # root may also be the texas/100 folder itself
    assert_loaded(load_dataset("texas100", root=root / "texas" / "100"), x, y, 6169)


def test_texas_npz_and_npy(tmp_path):
    x, y = binary_table(40, 6169, seed=1)
    np.savez(tmp_path / "texas100.npz", features=x, labels=y)
    assert_loaded(load_dataset("texas100", root=tmp_path), x, y, 6169)
    np.save(tmp_path / "feats.npy", x)
    np.save(tmp_path / "labels.npy", y)
    (tmp_path / "texas100.npz").unlink()
    assert_loaded(load_dataset("texas100", root=tmp_path), x, y, 6169)


def test_tabular_split_is_deterministic_by_seed(purchase_raw):
    root, _, _ = purchase_raw(n=200)
    a, b, c = (load_dataset("purchase100", root=root, seed=s).splits for s in (0, 0, 1))
    for name in SPLIT_NAMES:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.train, c.train)


def test_full_size_files_get_selenas_split():
    p = selena_sizes(197_324, purchase.SPEC)
    assert p["members"] == 19_732 and p["n_known"] + p["n_val"] == 29_599
    assert p["n_known"] == p["n_eval"] == 9_866
    t = selena_sizes(67_330, texas.SPEC)
    assert t["members"] == 10_000 and t["n_known"] + t["n_val"] == 20_199 and t["n_eval"] == 5_000


def test_too_few_rows_is_a_config_error(purchase_raw):
    root, _, _ = purchase_raw(n=10)
    with pytest.raises(ConfigError, match="has 10 rows: too few .* needs at least 16 rows"):
        load_dataset("purchase100", root=root)


def malformed_purchase(tmp_path, problem):
    x, y = binary_table(60, 600)
    table = np.column_stack([y + 1, x])
    if problem == "columns":
        table = table[:, :-1]
    elif problem == "non-binary":
        table[4, 7] = 2
    elif problem == "label 0":
        table[2, 0] = 0
    elif problem == "label 101":
        table[2, 0] = 101
    path = write_csv(tmp_path / "dataset_purchase", table)
    if problem == "ragged":
        lines = path.read_text().splitlines()
        lines[3] = lines[3].rsplit(",", 1)[0]
        path.write_text("\n".join(lines) + "\n")
    if problem == "text":
        path.write_text(path.read_text().replace("0", "a", 1))
    if problem == "empty":
        path.write_text("")
    return path


@pytest.mark.parametrize(("problem", "message"), [
    ("columns", "has 600 columns; expected 601"),
    ("ragged", "cannot read as comma-separated numbers"),
    ("text", "cannot read as comma-separated numbers"),
    ("empty", "is empty"),
    ("non-binary", r"line 5, feature 7 of 600 holds 2; expected 600 binary features"),
    ("label 0", r"line 3 has label 0; expected integer class ids in 1..100"),
    ("label 101", r"line 3 has label 101; expected integer class ids in 1..100"),
])
def test_malformed_purchase_files_name_the_path(tmp_path, problem, message):
    path = malformed_purchase(tmp_path, problem)
    with pytest.raises(DataError, match=message) as err:
        load_dataset("purchase100", root=tmp_path)
    assert str(err.value).startswith(str(path)) and CITATION in str(err.value)


def test_missing_purchase_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="no Purchase-100 file here; expected purchase100.npz") as err:
        load_dataset("purchase100", root=tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(DataError, match="no such file or folder") as err:
        load_dataset("purchase100", root=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_malformed_npz(tmp_path):
    x, y = binary_table(60, 600)
    np.savez(tmp_path / "purchase100.npz", data=x, target=y)
    with pytest.raises(DataError, match=r"has keys \['data', 'target'\]; expected features under one of"):
        load_dataset("purchase100", root=tmp_path)
    np.savez(tmp_path / "purchase100.npz", features=x[:, :599], labels=y)
    with pytest.raises(DataError, match=r"features have shape \(60, 599\); expected \(N, 600\)"):
        load_dataset("purchase100", root=tmp_path)
    np.savez(tmp_path / "purchase100.npz", features=x, labels=y[:-1])
    with pytest.raises(DataError, match="has 59 labels but .* has 60 feature rows"):
        load_dataset("purchase100", root=tmp_path)
    (tmp_path / "purchase100.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="purchase100.npz: not a readable .npz archive"):
        load_dataset("purchase100", root=tmp_path)


def test_npz_with_wrong_keys_keeps_its_own_diagnosis(tmp_path):
    x, y = binary_table(60, 600)
    np.savez(tmp_path / "purchase100.npz", data=x, target=y)
    with pytest.raises(DataError) as err:
        load_dataset("purchase100", root=tmp_path)
    message = str(err.value)
    assert "has keys ['data', 'target']" in message and "features" in message and "labels" in message
    assert "not a readable" not in message
    assert message.count(str(tmp_path / "purchase100.npz")) == 1


def test_malformed_texas_files(texas_raw):
    root, x, y = texas_raw()
    folder = root / "texas" / "100"
    write_csv(folder / "labels", (y[:-1] + 1)[:, None])
    with pytest.raises(DataError, match=f"{folder / 'labels'}: has 39 labels but .*feats has 40 feature rows"):
        load_dataset("texas100", root=root)
    write_csv(folder / "labels", np.r_[y[:-1] + 1, 101][:, None])
    with pytest.raises(DataError, match=r"labels: line 40 has label 101; expected integer class ids in 1..100"):
        load_dataset("texas100", root=root)
    (folder / "labels").unlink()
    with pytest.raises(DataError, match="labels: missing; Texas-100 needs both feats and labels"):
        load_dataset("texas100", root=root)
    write_csv(folder / "labels", (y + 1)[:, None])
    write_csv(folder / "feats", np.column_stack([x, x[:, :1]]))
    with pytest.raises(DataError, match=r"features have shape \(40, 6170\); expected \(N, 6169\)") as err:
        load_dataset("texas100", root=root)
    assert "Texas-100" in str(err.value) and str(folder / "feats") in str(err.value)


def test_missing_texas_files(tmp_path):
    with pytest.raises(DataError, match="no Texas-100 files here; expected texas100.npz"):
        load_dataset("texas100", root=tmp_path)


def test_bad_values_are_located_in_large_arrays_and_text_labels_rejected(tmp_path):
    x, y = binary_table(5000, 600)
    x[4500, 10] = 3  # past the first 4,096-row block the check scans
    np.savez(tmp_path / "purchase100.npz", features=x, labels=y)
    with pytest.raises(DataError, match="row 4500, feature 11 of 600 holds 3"):
        load_dataset("purchase100", root=tmp_path)
    np.savez(tmp_path / "purchase100.npz", features=x[:60], labels=y[:60].astype(str))
    with pytest.raises(DataError, match=r"labels have dtype <U\d+; expected numbers"):
        load_dataset("purchase100", root=tmp_path)
