"""Stacked training against the reference: K models trained as one stacked model end where K calls of `train`
end (same weights per model to float tolerance), for every optimizer family and with subsets of unequal size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samprivacy.errors import ConfigError, TrainingDiverged
from samprivacy.learn.models import build_model
from samprivacy.learn.population import balanced_membership
from samprivacy.learn.stacked import STACK_BYTES, StackedNet, stack_size, stackable, train_stacked
from samprivacy.learn.train import TrainConfig, train
from samprivacy.spec import TrialConfig

from .conftest import make_blobs

SEEDS = (3, 17, 29, 101)


def population(dataset, seeds=SEEDS, model="mlp", hidden=(16,)):
    pool = np.sort(dataset.splits.train)
    keep = balanced_membership(len(seeds), len(pool), 0.5, np.random.default_rng(0))
    indices = [pool[keep[k]] for k in range(len(seeds))]
    assert len({len(i) for i in indices}) > 1  # unequal subsets: the masking is exercised

    def models():
        out = []
        for s in seeds:
            torch.manual_seed(s)
            out.append(build_model(model, dataset.input_shape, dataset.num_classes, hidden=hidden))
        return out
    return models, indices


def both_ways(dataset, config: TrainConfig, **kw):
    models, indices = population(dataset, **kw)
    configs = [config.model_copy(update={"seed": s}) for s in SEEDS]
    sequential = [train(m, dataset, c, train_index=i) for m, c, i in zip(models(), configs, indices)]
    stacked = train_stacked(models(), dataset, configs, indices)
    return sequential, stacked


def assert_same(sequential, stacked, atol=2e-5):
    for a, b in zip(sequential, stacked, strict=True):
        for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
            torch.testing.assert_close(q, p, atol=atol, rtol=1e-4, msg=name)
        assert b.best_epoch == a.best_epoch
        assert (b.train_acc, b.val_acc, b.test_acc) == (a.train_acc, a.val_acc, a.test_acc)
        assert len(b.history) == len(a.history)
        for ra, rb in zip(a.history, b.history):
            assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-4)
            assert (rb["val_acc"], rb["train_acc"], rb["lr"]) == (ra["val_acc"], ra["train_acc"], ra["lr"])


@pytest.mark.parametrize("optimizer, extra", [
    ("sgd", {}), ("sam", {"rho": 0.1}), ("sharpreg", {"rho": 0.05, "lam": 1.5, "xi": 0.3}), ("asam", {}),
    ("sgd", {"base_optimizer": "adam", "lr": 0.01}), ("sam", {"base_optimizer": "adam", "lr": 0.01}),
])
def test_a_stacked_population_ends_with_the_weights_of_training_each_model_alone(optimizer, extra):
    config = TrialConfig(optimizer=optimizer, epochs=4, batch_size=24, device="cpu", **extra)
    sequential, stacked = both_ways(make_blobs(), config)
    assert_same(sequential, stacked)
    # the models differ from one another: each has its own seed, subset and order
    first, second = (r.model.state_dict()["1.weight"] for r in stacked[:2])
    assert not torch.allclose(first, second)


def test_the_paper_fc_with_tanh_and_swa_stacks_too():
    config = TrialConfig(optimizer="swa", epochs=4, batch_size=32, device="cpu", swa_start=0.4)
    sequential, stacked = both_ways(make_blobs(), config, model="fc", hidden=(24, 12))
    assert_same(sequential, stacked)
    assert all(r.best_epoch == 4 for r in stacked)


def test_a_stack_resumed_from_an_epoch_checkpoint_matches_an_uninterrupted_stack():
    dataset = make_blobs()
    models, indices = population(dataset)
    configs = [TrialConfig(optimizer="sam", rho=0.1, epochs=3, batch_size=24, device="cpu", seed=s) for s in SEEDS]
    saved, seen = {}, []

    def on_epoch(rows, checkpoint):
        assert [r["epoch"] for r in rows] == [rows[0]["epoch"]] * len(SEEDS)
        if rows[0]["epoch"] == 1:
            saved.update(checkpoint())

    whole = train_stacked(models(), dataset, configs, indices, on_epoch=on_epoch)
    resumed = train_stacked(models(), dataset, configs, indices, resume=saved,
                            on_epoch=lambda rows, _: seen.append(rows[0]["epoch"]))
    assert seen == [2, 3]
    for a, b in zip(whole, resumed):
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert torch.equal(p, q)
        assert a.history == [dict(r, seconds=a.history[i]["seconds"]) for i, r in enumerate(b.history)]


def test_what_cannot_stack_is_refused_with_the_way_out():
    assert stackable(build_model("mlp", (8,), 3)) and stackable(build_model("fc", (8,), 3, hidden=(4, 4)))
    assert not stackable(build_model("cnn", (1, 8, 8), 3))
    images = make_blobs(image=True)
    models, indices = population(images, model="fc", hidden=(8,))
    configs = [TrialConfig(epochs=1, device="cpu", seed=s) for s in SEEDS]
    with pytest.raises(ConfigError, match="in a row"):
        train_stacked(models(), images, configs, indices)  # augmentation is on for images
    with pytest.raises(ConfigError, match="except their seeds"):
        train_stacked(models(), images, [configs[0].model_copy(update={"lr": 0.1}), *configs[1:]], indices)
    dataset = make_blobs()
    models, indices = population(dataset)
    for change in ({"label_smoothing": 0.1}, {"selection": "last"}, {"defense": "advreg"}):
        with pytest.raises(ConfigError, match="hooks into `train` only"):  # the stack would train without it
            train_stacked(models(), dataset, [c.model_copy(update=change) for c in configs], indices)


def test_a_diverging_model_in_the_stack_names_the_epoch():
    dataset = make_blobs()
    models, indices = population(dataset)
    configs = [TrialConfig(lr=1e6, epochs=3, device="cpu", seed=s) for s in SEEDS]
    with pytest.raises(TrainingDiverged, match="epoch"):
        train_stacked(models(), dataset, configs, indices)


def test_a_stack_holds_as_many_models_as_the_device_budget_allows():
    small, paper = build_model("mlp", (200,), 20), build_model("fc", (600,), 100)
    small_bytes = sum(p.numel() * 4 for p in small.parameters())
    assert stack_size(small, "cpu") == STACK_BYTES["cpu"] // small_bytes > 64
    assert stack_size(paper, "cpu") == 3  # the paper's FC: 1.3 M parameters each


@pytest.mark.parametrize("model, hidden", [("mlp", (12, 8)), ("fc", (10,))])
@pytest.mark.parametrize("padded", [False, True])
def test_the_written_out_step_gives_autograds_losses_and_gradients(model, hidden, padded):
    """The step's forward and backward, written out (softmax - onehot, ReLU/Tanh backward, batched products),
    against autograd through the stack's forward and F.cross_entropy: ReLU (mlp) and Tanh (fc), whole batches
    and padded ones (a model whose order ended early: its padded rows weigh nothing)."""
    generator = torch.Generator().manual_seed(0)
    models = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        models.append(build_model(model, (6,), 4, hidden=hidden))
    k, b = len(models), 5
    x, y = torch.randn(k, b, 6, generator=generator), torch.randint(0, 4, (k, b), generator=generator)
    mask = torch.ones(k, b, dtype=torch.bool)
    if padded:  # model 1 a short batch, model 2 none (its order has ended: nothing flows to it)
        mask[1, 3:] = False
        mask[2, :] = False
    count = mask.sum(1).clamp(min=1)
    weight = mask / count.unsqueeze(1) if padded else 1.0 / b

    reference = StackedNet(models, torch.device("cpu"))
    ce = F.cross_entropy(reference(x).flatten(0, 1), y.flatten(), reduction="none").view(k, b)
    expected = (ce * mask).sum(1) / count if padded else ce.mean(1)
    expected.sum().backward()

    net = StackedNet(models, torch.device("cpu"))
    losses, logits = net.loss_backward(x, y, weight)
    torch.testing.assert_close(losses, expected.detach())
    torch.testing.assert_close(logits, reference(x).detach())
    for ours, theirs in zip(net.params, reference.params, strict=True):
        assert ours.grad is not None and ours.grad.shape == ours.shape
        torch.testing.assert_close(ours.grad, theirs.grad)
        if padded:
            assert not ours.grad[2].any()


def test_mixed_precision_trains_through_autograd_and_lands_near_full_precision():
    """amp (bf16 autocast; on by default on a GPU) keeps autograd's step: its weights stay near the written-out
    full-precision step's."""
    dataset = make_blobs()
    models, indices = population(dataset)
    full = TrialConfig(optimizer="sam", rho=0.1, epochs=2, batch_size=24, device="cpu", amp=False)
    runs = [train_stacked(models(), dataset, [config.model_copy(update={"seed": s}) for s in SEEDS], indices)
            for config in (full, full.model_copy(update={"amp": True}))]
    for a, b in zip(*runs):
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            assert not torch.equal(p, q)  # bf16 products: another path, not the same numbers
            torch.testing.assert_close(q, p, atol=0.05, rtol=0.05)
