
import numpy as np
import pytest
import torch

import samprivacy.audit as audit
from samprivacy.audit import ATTACKS, AttackContext, Signals, run_attack, run_attacks, validate_attack_names
from samprivacy.errors import ConfigError
from samprivacy.learn.data.base import Splits

from .conftest import ConstantModel, random_label_dataset

ALL = ["correctness", "confidence", "entropy", "modified_entropy", "loss", "confidence_classwise",
       "entropy_classwise", "modified_entropy_classwise", "nn", "label_only"]


def test_registry_names():
    assert list(ATTACKS) == ALL
    assert {ATTACKS[n].kind for n in ALL} == {"single_query", "label_only"}
    assert ATTACKS["label_only"].kind == "label_only"


def test_validate_attack_names():
    assert validate_attack_names(None) == tuple(ALL)
    assert validate_attack_names("loss") == ("loss",)
    assert validate_attack_names(["loss", "nn", "loss"]) == ("loss", "nn")
    with pytest.raises(ConfigError, match=r"unknown attack 'foo'; choose from: correctness, confidence"):
        validate_attack_names(["loss", "foo"])
    with pytest.raises(ConfigError, match="empty"):
        validate_attack_names([])


def test_memorising_model_leaks(memorised):
    dataset, model = memorised
    report = run_attacks(model, dataset, seed=0, label_only_queries=8)
    assert set(report.to_dict()) == set(ALL)
    assert report.results["loss"].metrics.accuracy > 0.6
    assert report.results["label_only"].metrics.accuracy > 0.6
    assert report.results["nn"].metrics.accuracy > 0.6
    best = max(r.metrics.accuracy for r in report.results.values())
    assert report.best.metrics.accuracy == best
    assert report.best_single_query.kind == "single_query" and report.best_label_only.name == "label_only"
    for metrics in report.to_dict().values():
        assert list(metrics) == ["accuracy", "auc", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "advantage"]


@pytest.mark.parametrize("feature_kind", ["continuous", "binary"])
def test_model_ignoring_its_input_does_not_leak(feature_kind):
    dataset = random_label_dataset(n_per_split=200, feature_kind=feature_kind)
    report = run_attacks(ConstantModel(dataset.num_classes), dataset, label_only_queries=4)
    for name, result in report.results.items():
        assert abs(result.metrics.accuracy - 0.5) < 0.1, name
        assert abs(result.metrics.auc - 0.5) < 0.1, name


def test_image_dataset_runs_label_only():
    d = random_label_dataset(n_per_split=20, dim=16)
    images = type(d)(d.name, d.x.reshape(-1, 1, 4, 4), d.y, d.num_classes, "image", d.splits)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, d.num_classes))
    result = run_attacks(model, images, ["label_only"], label_only_queries=10).results["label_only"]
    assert result.name == "label_only" and result.kind == "label_only"
    # The image path (shifts and flips, a finite set) was taken, not the binary/continuous feature noise:
    with pytest.raises(ConfigError, match="image augmentations"):
        run_attacks(model, images, ["label_only"], label_only_queries=10_000)


def test_protocol_fit_on_known_only():
    # Known sets: members confident; eval sets: flipped. Every attack fitted on known must be below chance.
    g = torch.Generator().manual_seed(0)
    def signals(member_peak, nonmember_peak):
        labels = torch.randint(0, 4, (400,), generator=g)
        logits = 0.1 * torch.randn(400, 4, generator=g)
        logits[torch.arange(400), labels] += torch.where(torch.arange(400) < 200, member_peak, nonmember_peak)
        return Signals.from_logits(logits, labels)
    membership = np.arange(400) < 200
    context = AttackContext(known=signals(5.0, -0.5), known_membership=membership,
                            eval=signals(-0.5, 5.0), eval_membership=membership)
    for name in ALL[:-1]:  # label_only needs a model
        m = run_attack(name, context).metrics
        assert m.accuracy < 0.5, name


def test_empty_split_is_a_config_error():
    d = random_label_dataset(n_per_split=10)
    s = d.splits
    empty = Splits(s.known_members, s.eval_members, s.known_nonmembers, np.array([], dtype=np.int64), s.val)
    with pytest.raises(ConfigError, match="'eval_nonmembers'"):
        run_attacks(ConstantModel(d.num_classes), type(d)(d.name, d.x, d.y, d.num_classes, "continuous", empty))


def test_public_names_exported():
    for name in audit.__all__:
        assert hasattr(audit, name), name



def test_the_strongest_attack_is_chosen_on_half_the_eval_sets_and_measured_on_the_other():
    """Twenty attacks with no signal (random scores): the maximum of their evaluation accuracies is above chance
    by selection alone; the held-out choice is not."""
    from samprivacy.audit.metrics import attack_metrics
    from samprivacy.audit.suite import AttackReport, AttackResult

    rng = np.random.default_rng(0)
    membership = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    results = {}
    for i in range(20):
        scores = rng.random(1000)
        results[f"a{i}"] = AttackResult(f"a{i}", "single_query", attack_metrics(scores, membership, 0.5), scores)
    report = AttackReport(results, membership)
    best_mean = max(r.metrics.accuracy for r in results.values())
    held_out = report.held_out_best("accuracy")
    assert best_mean > 0.52 and abs(held_out - 0.5) < 0.025
    assert report.held_out_best("tpr_at_fpr_0.001") is None  # 250 non-members per half cannot show 0.1% FPR
