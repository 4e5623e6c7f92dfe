"""A trial with a population: every attack with each model as the target, resume, shared references."""

import io
import json

import numpy as np
import pytest
import torch

from samprivacy import catalog
from samprivacy.errors import ConfigError
from samprivacy.learn import stacked as stacked_module
from samprivacy.pipeline import ReferenceStore, run_population_trial, run_trial
from samprivacy.spec import Population, TrialConfig

SMALL = dict(dataset="digits", hidden=(32,), epochs=2, batch_size=128, device="cpu")
ATTACKS = ("loss", "confidence_classwise", "lira", "lira_offline", "rmia")


def population_config(**kw) -> TrialConfig:
    pop = kw.pop("population", Population(models=6, rmia={"reference_models": 1}))
    return TrialConfig(**{**SMALL, "attacks": ATTACKS, "population": pop, **kw})


@pytest.fixture(scope="module")
def finished():
    return run_trial(population_config())


def test_summary_reports_every_attack_averaged_over_targets(finished):
    s = finished.summary()
    assert s["population"]["models"] == 6 and len(s["population"]["per_model"]) == 6
    tests = [m["test_acc"] for m in s["population"]["per_model"]]
    assert s["test_acc"] == pytest.approx(np.mean(tests)) and s["test_acc_std"] == pytest.approx(np.std(tests, ddof=1))
    assert set(s["attacks"]) == set(ATTACKS) and set(s["attacks_std"]) == set(ATTACKS)
    for name in ("lira", "lira_offline", "rmia"):
        for measure in catalog.ATTACK_MEASURES:
            assert s[f"{name}_{measure}"] == s["attacks"][name][measure]
            assert s[f"{name}_{measure}_per_target"] is None or s[f"{name}_{measure}_per_target_std"] >= 0
    assert s["conf_var_out"] > 0 and s["conf_var_test"] > 0
    # each model's attack metrics are its own: targets differ, so the spread is not zero
    assert s["attacks_std"]["loss"]["auc"] > 0
    assert [row["model"] for row in s["history"]] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_population_attacks_are_scored_on_the_whole_pool_and_pooled_over_targets(finished):
    from samprivacy.audit.metrics import auc

    s, keep = finished.summary(), finished.plan.keep
    pool = keep.shape[1]
    assert s["population"]["pool"] == pool and s["population"]["pool_protocol"] == "all"
    for name in ("lira", "lira_offline", "rmia"):
        result = finished.strong[name]
        # the pooled ROC: every target's scores on its own members and non-members, K times the negatives
        assert s[f"{name}_auc"] == pytest.approx(auc(result.scores.ravel(), keep.ravel()))
        assert s[f"{name}_tpr_at_fpr_0.01_negatives"] == int((~keep).sum()) > 5 * pool // 2
        assert s[f"{name}_tpr_at_fpr_0.01_per_target_negatives"] == int((~keep).sum(axis=1).min())
        low, value, high = (s[f"{name}_tpr_at_fpr_0.01{x}"] for x in ("_ci_low", "", "_ci_high"))
        assert low <= value <= high
        # per target, the whole pool (not its eval half): AUC of target 0 on every example
        assert result.per_target[0].auc == pytest.approx(auc(result.scores[0], keep[0]))
        # fewer than 1,000 non-members per target: the per-target TPR at 0.1% FPR is missing, with its reason
        assert s[f"{name}_tpr_at_fpr_0.001_per_target"] is None
        assert "below 1/" in s["missing"][f"{name}_tpr_at_fpr_0.001_per_target"]
        assert s["low_fpr"][name]["tpr_at_fpr_0.01"]["pooled"] is True
    # single-model attacks are scored on the eval half: fewer negatives still, and no pooled figure
    assert s["low_fpr"]["loss"]["tpr_at_fpr_0.001"]["value"] is None
    assert s["low_fpr"]["loss"]["tpr_at_fpr_0.01"]["negatives"] == finished.eval_negatives() < pool // 2


def test_the_best_attack_is_chosen_on_targets_it_is_not_scored_on(finished):
    s = finished.summary()
    acc = {name: np.array([r.attacks[name].accuracy for r in finished.records])
           for name in ("loss", "confidence_classwise")}
    acc |= {name: np.array([m.accuracy for m in r.per_target]) for name, r in finished.strong.items()}
    even, odd = np.arange(6) % 2 == 0, np.arange(6) % 2 == 1
    held_out = [acc[max(acc, key=lambda n: acc[n][a].mean())][b].mean() for a, b in ((even, odd), (odd, even))]
    assert s["attack_acc"] == pytest.approx(np.mean(held_out))
    assert s["best_attack"] == max(acc, key=lambda n: acc[n].mean())
    sq = {n: acc[n] for n in ("loss", "confidence_classwise")}
    held_out = [sq[max(sq, key=lambda n: sq[n][a].mean())][b].mean() for a, b in ((even, odd), (odd, even))]
    assert s["single_query_acc"] == pytest.approx(np.mean(held_out))


def test_the_pool_protocol_is_a_choice(finished):
    members = run_trial(population_config(population=Population(models=6, pool="members",
                                                                 rmia={"reference_models": 1}), epochs=1))
    assert members.summary()["population"]["pool_protocol"] == "members"
    assert set(members.plan.pool) == set(members.dataset.splits.train)
    held_out = set(finished.dataset.splits.test) | set(finished.dataset.splits.val)
    assert set(finished.plan.pool) == set(range(len(finished.dataset.y))) - held_out


def test_every_target_is_scored_against_its_own_membership(finished):
    for name, result in finished.strong.items():
        assert result.scores.shape == finished.plan.keep.shape
        assert len(result.per_target) == 6
    # the targets' scores differ (each model in turn is the target)
    assert not np.allclose(finished.strong["lira"].scores[0], finished.strong["lira"].scores[1])


def test_saved_arrays_hold_statistics_not_models(finished, tmp_path):
    finished.save(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"summary.json", "splits.npz", "population.npz", "roc.npz", "roc.png"}
    with np.load(tmp_path / "population.npz") as f:
        assert f["keep"].shape == (6, 800) and f["conf"].shape == (6, 800, 1) and f["prob"].shape == (6, 800, 1)
        assert f["test_conf"].shape == (6, len(f["test"]), 1) and f["lira_scores"].shape == (6, 800)
        assert f["memorization"].shape == (800,) and np.isfinite(f["memorization"]).all()
    assert json.loads((tmp_path / "summary.json").read_text())["lira_auc"] == finished.summary()["lira_auc"]


class Stop(Exception):
    pass


def checkpoint_at_model_2(**kw) -> dict:
    """The checkpoint of a population stopped after model 2's first epoch."""
    saved = {}

    def on_epoch(row, checkpoint):
        if row["model"] == 2 and row["epoch"] == 1:
            saved.update(checkpoint())
            raise Stop

    with pytest.raises(Stop):
        run_population_trial(population_config(), on_epoch=on_epoch, **kw)
    return saved


@pytest.mark.parametrize("stacked", [True, False])
def test_an_interrupted_population_resumes_from_the_models_it_trained(finished, stacked):
    saved = checkpoint_at_model_2(stacked=stacked)
    # as a sweep trial keeps it: torch.save, read back with weights_only=True
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    saved = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    trained = []
    resumed = run_population_trial(population_config(), resume=saved, stacked=stacked,
                                   on_epoch=lambda row, _: trained.append((row["model"], row["epoch"])))
    if stacked:  # the stack stopped after its first epoch: every model goes on with its second
        assert saved["records"] == {} and saved["stack"]["members"] == list(range(6))
        assert trained == [(k, 2) for k in range(6)]
    else:  # model 2 continues after epoch 1; models 0 and 1 are not retrained
        assert sorted(saved["records"]) == [0, 1] and saved["model"] == 2
        assert trained == [(2, 2), (3, 1), (3, 2), (4, 1), (4, 2), (5, 1), (5, 2)]
    a, b = resumed.summary(), finished.summary()
    for key in ("test_acc", "lira_auc", "rmia_tpr_at_fpr_0.01", "attack_acc"):
        assert a[key] == pytest.approx(b[key], abs=0 if stacked else 1e-6), key
    other_plan = dict(saved, fingerprint="0" * 64)
    with pytest.raises(ConfigError, match="another membership plan"):
        run_trial(population_config(), resume=other_plan)


def test_a_stacked_population_gives_the_results_of_training_in_a_row(finished):
    in_a_row = run_population_trial(population_config(), stacked=False)
    a, b = finished.summary(), in_a_row.summary()
    for r, s in zip(finished.records, in_a_row.records):
        assert r.metrics["best_epoch"] == s.metrics["best_epoch"]
        np.testing.assert_allclose(r.stats.conf, s.stats.conf, rtol=1e-4, atol=1e-4)
    for key in ("test_acc", "train_acc", "val_acc", "attack_acc", "lira_auc", "lira_tpr_at_fpr_0.01", "rmia_auc",
                "lira_offline_auc", "conf_var_out"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-4), key


@pytest.mark.parametrize("variant", [{"defense": "advreg"}, {"label_smoothing": 0.1}, {"selection": "last"}])
def test_training_variants_the_stack_does_not_know_train_one_model_at_a_time(variant):
    from samprivacy.learn.data import load_dataset
    from samprivacy.pipeline.members import stack_models

    dataset = load_dataset("digits", seed=0)
    assert stack_models(population_config(), dataset) > 1  # plain training of this FC stacks
    assert stack_models(population_config(**variant), dataset) == 1


def test_a_population_larger_than_one_stack_trains_stack_after_stack(finished, monkeypatch):
    # the digits FC (64 -> 32 -> 10) holds 2,410 float32 parameters: a budget of 4 models gives stacks [0-3], [4, 5]
    monkeypatch.setitem(stacked_module.STACK_BYTES, "cpu", 4 * 2410 * 4)
    saved, seen = {}, []

    class Stop(Exception):
        pass

    def on_epoch(row, checkpoint):
        seen.append(row["model"])
        if row["model"] == 4 and row["epoch"] == 1:
            saved.update(checkpoint())
            raise Stop

    with pytest.raises(Stop):
        run_population_trial(population_config(), on_epoch=on_epoch)
    assert seen == [0, 1, 2, 3, 0, 1, 2, 3, 4]  # the first stack's two epochs, then the second stack's first
    assert sorted(saved["records"]) == [0, 1, 2, 3] and saved["stack"]["members"] == [4, 5]
    resumed = run_population_trial(population_config(), resume=saved)
    a, b = resumed.summary(), finished.summary()
    for key in ("test_acc", "lira_auc", "rmia_auc", "attack_acc"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-4), key


def test_a_stack_resumed_where_stacks_are_cut_smaller_goes_on_as_it_was_cut(monkeypatch):
    monkeypatch.setitem(stacked_module.STACK_BYTES, "cpu", 4 * 2410 * 4)  # stacks [0-3], [4, 5]
    saved = checkpoint_at_model_2()
    monkeypatch.setitem(stacked_module.STACK_BYTES, "cpu", 2 * 2410 * 4)  # another device: stacks of 2
    seen = []
    run_population_trial(population_config(), resume=saved,
                         on_epoch=lambda row, _: seen.append((row["model"], row["epoch"])))
    assert seen == [(0, 2), (1, 2), (2, 2), (3, 2), (4, 1), (5, 1), (4, 2), (5, 2)]


def test_shared_references_are_trained_once_and_reused(tmp_path):
    store = ReferenceStore(tmp_path / "refs")
    config = population_config(population=Population(models=1, shared_references=4),
                               attacks=("loss", "lira_offline", "rmia"))
    first = run_trial(config, references=store)
    files = sorted((tmp_path / "refs").rglob("model-*.pt"))
    assert len(files) == 4
    stamps = [f.stat().st_mtime_ns for f in files]
    sam = run_trial(config.model_copy(update={"optimizer": "sam", "rho": 0.05}), references=store)
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "refs").rglob("model-*.pt"))] == stamps
    assert sam.summary()["rmia_auc"] != first.summary()["rmia_auc"]
    recipe = json.loads(next((tmp_path / "refs").rglob("recipe.json")).read_text())
    assert recipe["optimizer"] == "sgd" and recipe["epochs"] == 2  # plain SGD at the trial's budget
    with pytest.raises(ConfigError, match="--references"):
        run_trial(config)


def test_population_attacks_need_a_population_that_can_serve_them():
    with pytest.raises(ValueError, match="needs a population"):
        TrialConfig(attacks=("lira",))
    with pytest.raises(ValueError, match="models >= 6"):
        TrialConfig(attacks=("lira",), population=Population(models=5))
    with pytest.raises(ValueError, match="rmia.reference_models"):
        TrialConfig(attacks=("rmia",), population=Population(models=6, rmia={"reference_models": 3}))
    # attacks left out: every attack the population can run
    assert "lira" in TrialConfig(population=Population(models=6)).attack_names()
    assert "lira" not in TrialConfig(population=Population(models=2, shared_references=2)).attack_names()
    assert "rmia" in TrialConfig(population=Population(models=2, shared_references=4)).attack_names()
    assert "rmia" not in TrialConfig(population=Population(models=2, shared_references=2)).attack_names()


def test_references_are_keyed_by_the_dataset_options_and_a_foreign_file_is_refused(tmp_path):
    store = ReferenceStore(tmp_path / "refs")
    small = dict(dataset="longtail", hidden=(16,), epochs=1, batch_size=256, device="cpu", attacks=("loss", "rmia"),
                 population=Population(models=1, shared_references=4))
    options = dict(n=1000, classes=5, dim=16, subpopulations=10)
    run_trial(TrialConfig(**small, dataset_options=options), references=store)
    run_trial(TrialConfig(**small, dataset_options={**options, "zipf": 2.0}), references=store)
    folders = sorted(p for p in (tmp_path / "refs").iterdir() if p.is_dir())
    assert len(folders) == 2 and all(len(list(f.glob("model-*.pt"))) == 4 for f in folders)
    # a file from the other recipe copied in (or any foreign file) is refused, never loaded
    (folders[0] / "model-0001.pt").write_bytes((folders[1] / "model-0001.pt").read_bytes())
    for options_tried in (options, {**options, "zipf": 2.0}):
        try:
            run_trial(TrialConfig(**small, dataset_options=options_tried), references=store)
        except ConfigError as e:
            assert "another plan or other data" in str(e) and "refusing to load" in str(e)
            break
    else:
        pytest.fail("a reference file of another recipe was loaded")
    (folders[0] / "model-0000.pt").write_bytes(b"not a torch file")
    (folders[1] / "model-0000.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="cannot be read"):
        run_trial(TrialConfig(**small, dataset_options=options), references=store)


def test_rmia_that_cannot_tune_a_says_so_in_the_summary(tmp_path):
    # 2 shared references at fraction 0.5: every example is IN for one of them, so reference 0's non-members have
    # no other OUT model to tune a with
    config = population_config(population=Population(models=1, shared_references=2, rmia={"reference_models": 1}),
                               attacks=("loss", "rmia"), epochs=1)
    s = run_trial(config, references=tmp_path / "refs").summary()
    assert s["rmia_a"] == 0.3 and len(s["warnings"]) == 1 and "could not be tuned" in s["warnings"][0]
    tuned = run_trial(config.model_copy(update={"population": Population(models=1, shared_references=4)}),
                      references=tmp_path / "refs").summary()
    assert tuned["warnings"] == []
