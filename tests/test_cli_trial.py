"""`samprivacy trial`: the JSON document, and one clear message + non-zero exit for each kind of bad input."""

import json
import subprocess
import sys

import pytest

from samprivacy.cli import main

METRIC_KEYS = {"accuracy", "auc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "advantage"}


def test_trial_writes_every_metric(tmp_path, capsys):
    path = tmp_path / "out" / "trial.json"
    rc = main(["trial", "--dataset", "digits", "--optimizer", "sam", "--rho", "0.05", "--epochs", "3",
               "--json", str(path), "--out", str(tmp_path / "artifacts")])
    assert rc == 0
    doc = json.loads(path.read_text())
    assert doc["config"]["optimizer"] == "sam" and doc["config"]["rho"] == 0.05
    for key in ("test_acc", "train_acc", "val_acc", "attack_acc", "seconds"):
        assert 0 <= doc[key] <= (1 if key != "seconds" else 600), key
    # the strongest attack is chosen on half the eval sets and measured on the other: never above the best mean
    # by much, and not the maximum of the attacks' evaluation figures itself
    assert doc["attack_acc"] <= max(m["accuracy"] for m in doc["attacks"].values()) + 0.05
    assert doc["best_attack"] == max(doc["attacks"], key=lambda n: doc["attacks"][n]["accuracy"])
    assert doc["attack_auc"] <= max(m["auc"] for m in doc["attacks"].values()) + 0.05
    from samprivacy import catalog

    # a spec may name any of these; population metrics come only from trials with a population
    single = [m for m in catalog.objective_metrics() if catalog.metric_needs(m)[:1] not in (("population",),
                                                                                           ("attack",), ("defense",))]
    assert "test_acc" in single and "lira_auc" not in single
    # digits holds 400 evaluation non-members: a TPR at 0.1% FPR would be the TPR at zero false positives
    assert doc["eval_nonmembers"] == 400 and doc["attack_tpr_at_fpr_0.001"] is None
    assert "below 1/400" in doc["missing"]["attack_tpr_at_fpr_0.001"]
    assert all(m["tpr_at_fpr_0.001"] is None for m in doc["attacks"].values())
    assert all(isinstance(doc[name], float) for name in single if name not in doc["missing"])
    assert {"loss", "confidence", "nn", "label_only", "entropy_classwise"} <= set(doc["attacks"])
    assert all(set(m) == METRIC_KEYS for m in doc["attacks"].values())
    assert len(doc["history"]) == 3
    assert {p.name for p in (tmp_path / "artifacts").iterdir()} >= {"summary.json", "splits.npz", "model.pt", "roc.npz",
                                                                     "roc.png"}
    assert "test acc" in capsys.readouterr().out


def test_saved_weights_load_with_weights_only(tmp_path):
    import torch

    main(["trial", "--epochs", "1", "--attacks", "loss", "--out", str(tmp_path)])
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("args,needle", [
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--optimizer", "adamw"], "optimizer"),
    (["--optimizer", "sam", "--rho", "-0.1"], "rho"),
    (["--optimizer", "sam", "--rho", "nan"], "rho"),
    (["--optimizer", "sam", "--lam", "1.0"], "lam"),
    (["--optimizer", "sgd", "--rho", "0.1"], "rho"),
    (["--dataset", "purchase100", "--data-root", "/nonexistent/purchase"], "/nonexistent/purchase"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--attacks", "loss,lira2"], "unknown attack 'lira2'"),
    (["--epochs", "0"], "epochs"),
    (["--schedule", "warmup"], "schedule"),
])
def test_bad_input_exits_2_with_one_clear_message(tmp_path, capsys, args, needle):
    path = tmp_path / "never.json"
    rc = main(["trial", "--epochs", "1", *args, "--json", str(path)] if "--epochs" not in args
              else ["trial", *args, "--json", str(path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and "error" in err
    assert "Traceback" not in err
    assert not path.exists()


def test_json_into_a_directory_exits_2_and_leaves_no_temp_file(tmp_path, capsys):
    target = tmp_path / "results"
    target.mkdir()
    rc = main(["trial", "--epochs", "1", "--attacks", "loss", "--json", str(target)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "error" in err and "Traceback" not in err
    assert str(target) in "".join(err.split())  # the console may wrap a long path
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no .results.xxxx left over
    assert target.is_dir() and not any(target.iterdir())


def test_divergence_exits_3_naming_the_epoch(tmp_path, capsys):
    rc = main(["trial", "--epochs", "2", "--lr", "1e30", "--momentum", "0", "--json", str(tmp_path / "x.json")])
    assert rc == 3
    assert "diverged at epoch 1" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_the_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "samprivacy.cli", "trial", "--dataset", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown dataset 'nope'" in proc.stderr


def test_trial_with_a_population_reports_the_strong_attacks(tmp_path, capsys):
    path = tmp_path / "pop.json"
    rc = main(["trial", "--population", "6", "--epochs", "1", "--hidden", "16", "--attacks", "loss,lira,rmia",
               "--json", str(path), "--out", str(tmp_path / "artifacts")])
    assert rc == 0
    doc = json.loads(path.read_text())
    assert doc["population"]["models"] == 6 and {"lira_auc", "rmia_tpr_at_fpr_0.001", "test_acc_std"} <= set(doc)
    assert (tmp_path / "artifacts" / "population.npz").exists()
    assert "± std over the population's targets" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--population-fraction", "0.5"], "--population-fraction describes `population`; add --population MODELS"),
    (["--attacks", "lira"], "needs a population"),
    (["--population", "4", "--attacks", "lira"], "models >= 6"),
    (["--optimizer", "sgd", "--swa-start", "0.5"], "`swa_start` applies only to swa, not 'sgd'"),
])
def test_population_and_optimizer_flags_are_checked(argv, message, capsys):
    assert main(["trial", "--epochs", "1", *argv]) == 2
    assert message in " ".join(capsys.readouterr().err.split())  # the console wraps long lines


def test_dataset_options_and_the_pool_protocol_reach_a_population_trial(tmp_path):
    path = tmp_path / "pop.json"
    assert main(["trial", "--dataset", "longtail", "--dataset-options", "{n: 1500, classes: 5, binary: true}",
                 "--hidden", "16", "--epochs", "1", "--population", "6", "--population-pool", "members", "--attacks", "loss,lira", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    assert doc["config"]["dataset_options"] == {"n": 1500, "classes": 5, "binary": True}
    assert doc["population"]["pool_protocol"] == "members" and doc["population"]["pool"] == 600
    assert doc["lira_tpr_at_fpr_0.01_negatives"] == doc["population"]["negatives_pooled"] == 6 * 300


def test_a_dp_trial_from_the_command_line_reports_its_epsilon(tmp_path):
    path = tmp_path / "dp.json"
    rc = main(["trial", "--dataset", "digits", "--hidden", "32", "--epochs", "2", "--defense", "dp",
               "--noise-multiplier", "1.0", "--max-grad-norm", "1.0", "--attacks", "loss", "--json", str(path)])
    assert rc == 0
    doc = json.loads(path.read_text())
    assert doc["method"] == "dp-sgd" and doc["config"]["defense"] == "dp" and doc["epsilon"] > 0


def test_a_bad_defense_flag_names_the_field(capsys):
    assert main(["trial", "--dataset", "digits", "--defense", "selena", "--selena-k", "3", "--selena-l", "3"]) == 2
    captured = capsys.readouterr()
    assert "selena_l: must be < selena_k" in captured.err + captured.out
