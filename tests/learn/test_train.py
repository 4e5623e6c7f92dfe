import typing

import pytest
import torch

from samprivacy.errors import ConfigError, TrainingDiverged
from samprivacy.learn.models import build_model
from samprivacy.learn.train import TrainConfig, frozen_batchnorm, train
from samprivacy.spec import TrialConfig

from .conftest import make_blobs


def fit(dataset, **kw):
    torch.manual_seed(0)
    model = build_model("mlp", dataset.input_shape, dataset.num_classes, hidden=(16,))
    cfg = TrialConfig(**{"epochs": 5, "batch_size": 16, "lr": 0.1, "device": "cpu", **kw})
    return train(model, dataset, cfg)


@pytest.mark.parametrize("optimizer", ["sgd", "sam", "asam", "sharpreg"])
def test_every_optimizer_learns_an_easy_task(blobs, optimizer):
    result = fit(blobs, optimizer=optimizer)
    assert result.test_acc > 0.9
    assert len(result.history) == 5 and result.history[-1]["epoch"] == 5


def test_cpu_training_is_deterministic_for_a_seed(blobs):
    a, b = fit(blobs, optimizer="sam", seed=3), fit(blobs, optimizer="sam", seed=3)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    c = fit(blobs, optimizer="sam", seed=4)
    assert [r["train_loss"] for r in a.history] != [r["train_loss"] for r in c.history]


def test_the_best_validation_epoch_is_selected(blobs):
    result = fit(blobs, epochs=6)
    best = max(result.history, key=lambda r: r["val_acc"])
    assert result.best_epoch == best["epoch"]
    assert result.val_acc == pytest.approx(best["val_acc"])


def test_resume_from_an_epoch_checkpoint_matches_an_uninterrupted_run(blobs):
    saved = {}

    def on_epoch(row, checkpoint):
        if row["epoch"] == 2:
            saved.update(checkpoint())

    torch.manual_seed(0)
    cfg = TrialConfig(optimizer="sam", epochs=5, batch_size=16, lr=0.1, device="cpu")
    model = build_model("mlp", blobs.input_shape, blobs.num_classes, hidden=(16,))
    full = train(model, blobs, cfg, on_epoch=on_epoch)
    model2 = build_model("mlp", blobs.input_shape, blobs.num_classes, hidden=(16,))
    resumed = train(model2, blobs, cfg, resume=saved)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    assert resumed.test_acc == full.test_acc


def test_divergence_raises_naming_the_epoch(blobs):
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        fit(blobs, lr=1e30, momentum=0.0)


def test_unknown_schedule_is_a_config_error(blobs):
    # TrialConfig refuses it first; train() checks again for any other object with TrainConfig's fields
    unchecked = TrialConfig(epochs=1, device="cpu").model_copy(update={"schedule": "warmup"})
    model = build_model("mlp", blobs.input_shape, blobs.num_classes, hidden=(16,))
    with pytest.raises(ConfigError, match="schedule"):
        train(model, blobs, unchecked)


def test_batchnorm_statistics_follow_the_first_pass_only():
    data = make_blobs(dim=8, image=True)
    torch.manual_seed(0)
    model = build_model("cnn", data.input_shape, data.num_classes, hidden=(4, 4))
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    x = torch.randn(8, *data.input_shape)
    model.train()
    with frozen_batchnorm(model, frozen=True):
        model(x)
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    model(x)
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert bn.momentum == 0.1
    result = train(model, data, TrialConfig(optimizer="sam", epochs=2, batch_size=16, device="cpu", augment=False))
    assert result.test_acc > 0.5


def test_train_reads_trial_config_fields_of_the_same_type():
    # TrainConfig names what train() reads; TrialConfig defines each of those fields (and its default), once
    hints = {name: typing.get_type_hints(member.fget)["return"] for name, member in vars(TrainConfig).items()
             if isinstance(member, property)}
    assert {"optimizer", "rho", "lr", "epochs", "swa_lr"} <= set(hints)
    for name, hint in hints.items():
        field = TrialConfig.model_fields[name].annotation
        assert field == hint or (hint is str and typing.get_origin(field) is typing.Literal), (name, hint, field)


def test_swa_returns_the_average_of_the_last_epochs_weights(blobs):
    snapshots = []

    def on_epoch(row, checkpoint):
        snapshots.append(checkpoint()["model"])

    torch.manual_seed(0)
    model = build_model("mlp", blobs.input_shape, blobs.num_classes, hidden=(16,))
    cfg = TrialConfig(optimizer="swa", epochs=8, batch_size=16, lr=0.1, swa_start=0.5, swa_lr=0.02, device="cpu")
    result = train(model, blobs, cfg, on_epoch=on_epoch)
    # floor(0.5 * 8) + 1 = 5: epochs 5..8 are averaged, at the constant swa_lr
    expected = {k: torch.stack([s[k] for s in snapshots[4:]]).mean(0) for k in snapshots[0]}
    for key, value in result.model.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    assert [r["lr"] for r in result.history[4:]] == [0.02] * 4 and result.history[3]["lr"] != 0.02
    assert result.best_epoch == 8 and result.test_acc > 0.9


def test_swa_resumes_with_its_running_average(blobs):
    saved = {}

    def on_epoch(row, checkpoint):
        if row["epoch"] == 6:
            saved.update(checkpoint())

    cfg = TrialConfig(optimizer="swa", epochs=8, batch_size=16, lr=0.1, swa_start=0.5, device="cpu")
    torch.manual_seed(0)
    full = train(build_model("mlp", blobs.input_shape, blobs.num_classes, hidden=(16,)), blobs, cfg,
                 on_epoch=on_epoch)
    resumed = train(build_model("mlp", blobs.input_shape, blobs.num_classes, hidden=(16,)), blobs, cfg,
                    resume=saved)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_swa_recomputes_batchnorm_statistics_for_the_average():
    data = make_blobs(dim=8, image=True)
    torch.manual_seed(0)
    model = build_model("cnn", data.input_shape, data.num_classes, hidden=(4, 4))
    cfg = TrialConfig(optimizer="swa", epochs=4, batch_size=16, lr=0.05, device="cpu", augment=False)
    result = train(model, data, cfg)
    bn = next(m for m in result.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # update_bn: a cumulative average over one pass of the training data, counted in num_batches_tracked
    train_batches = -(-len(data.splits.train) // 16)
    assert int(bn.num_batches_tracked) == train_batches


def test_augmentation_is_on_for_images_by_default_and_can_be_turned_off():
    from samprivacy.learn.train import resolve_augment

    assert resolve_augment(None, "image") and not resolve_augment(False, "image")
    assert not resolve_augment(None, "continuous") and not resolve_augment(True, "binary")
    data = make_blobs(dim=8, image=True)
    torch.manual_seed(0)
    base = dict(optimizer="sgd", epochs=2, batch_size=16, device="cpu")
    plain = train(build_model("cnn", data.input_shape, 3, hidden=(4, 4)), data, TrialConfig(augment=False, **base))
    torch.manual_seed(0)
    augmented = train(build_model("cnn", data.input_shape, 3, hidden=(4, 4)), data, TrialConfig(**base))
    assert plain.history[0]["train_loss"] != augmented.history[0]["train_loss"]


def test_a_population_model_trains_on_the_rows_it_is_given(blobs):
    index = blobs.splits.train[:10]
    torch.manual_seed(0)
    model = build_model("mlp", blobs.input_shape, blobs.num_classes, hidden=(16,))
    result = train(model, blobs, TrialConfig(epochs=1, batch_size=4, device="cpu"), train_index=index)
    # 10 rows in batches of 4: three steps, and train_acc is a count over 10 rows
    assert result.history[0]["train_acc"] * 10 == pytest.approx(round(result.history[0]["train_acc"] * 10))
    assert result.train_acc * 10 == pytest.approx(round(result.train_acc * 10))
