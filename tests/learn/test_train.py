import dataclasses

import pytest
import torch

from samprivacy.errors import ConfigError, TrainingDiverged
from samprivacy.learn.models import build_model
from samprivacy.learn.train import TrainConfig, frozen_batchnorm, train

from .conftest import make_blobs


def fit(dataset, **kw):
    torch.manual_seed(0)
    model = build_model("mlp", dataset.input_shape, dataset.num_classes, hidden=(16,))
    cfg = TrainConfig(**{"epochs": 5, "batch_size": 16, "lr": 0.1, "device": "cpu", **kw})
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
    cfg = TrainConfig(optimizer="sam", epochs=5, batch_size=16, lr=0.1, device="cpu")
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
    with pytest.raises(ConfigError, match="schedule"):
        fit(blobs, schedule="warmup")


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
    result = train(model, data, TrainConfig(optimizer="sam", epochs=2, batch_size=16, device="cpu"))
    assert result.test_acc > 0.5


def test_training_config_is_recorded(blobs):
    result = fit(blobs, optimizer="sam", rho=0.2)
    assert result.config == dataclasses.asdict(TrainConfig(optimizer="sam", rho=0.2, epochs=5, batch_size=16,
                                                           lr=0.1, device="cpu"))
