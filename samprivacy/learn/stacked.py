"""K models of one configuration trained as one stacked model: the same protocol as K calls of `train`, at the
price of a few.

    results = train_stacked(models, dataset, configs, train_indices)   # one TrainResult per model, as train's

Every layer of the K models is one batched matmul over a leading model axis (weights stacked to (K, in, out),
`torch.baddbmm`), and everything `train` does per model stays per model: its own initial weights (the models
passed in, built from their own seeds), its own training subset and batch order (a generator seeded as `train`
seeds it), its own SAM/ASAM/SharpReg perturbation normalised by its own gradient norm and its own base-optimizer
state (learn.stacked_optim), its own best epoch on the validation split, its own SWA average. Subsets of
different sizes are handled by masking: a step takes each model's next batch of its own order; a model whose
order is shorter has a short or empty batch there (padded rows weigh nothing), and a model with an empty batch
does not step at all (weights, momentum, Adam's step count unchanged), exactly as it would have stopped its own
epoch earlier.

What stacks: `nn.Sequential` of Flatten, Linear, ReLU and Tanh (the FC and MLP models) without augmentation.
Anything else (BatchNorm, convolutions, image augmentation) trains in a row with `train`; `stackable` says which.
Results agree with `train` to float tolerance (a batched matmul sums in another order), not bit for bit.

A training pass is written out (`StackedNet.loss_backward`: the forward, softmax minus one-hot, each layer's
gradient products), not recorded by autograd: a small model's step on a CPU is mostly per-operation cost. With
bf16 mixed precision (`amp`) the pass goes through autograd, which handles autocast's mixed dtypes.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samprivacy.errors import ConfigError, TrainingDiverged
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.stacked_optim import StackedOptimizer, per_model
from samprivacy.learn.train import (SCHEDULES, TrainConfig, TrainResult, resolve_augment, resolve_device,
                                    swa_schedule)

ACTIVATIONS: dict[type[nn.Module], Callable[[torch.Tensor], torch.Tensor]] = {nn.ReLU: torch.relu, nn.Tanh: torch.tanh}


# Stacked parameters per stack, in bytes. On a CPU the stack's weights, gradients and momentum must stay near the
# cache or every step streams them from memory: measured (docs/performance.md), 16 MLPs of 56 KB each train 3 to
# 5 times faster stacked than in a row, while FCs of 2.5 MB each break even at 4 to 8 per stack and lose at 16.
# A GPU holds far larger stacks.
STACK_BYTES = {"cpu": 16 * 2**20, "cuda": 4 * 2**30}


def stack_size(model: nn.Module, device: str | None) -> int:
    """How many copies of `model` one stack holds on `device`: their parameters within STACK_BYTES (at least 1)."""
    per_model = sum(p.numel() * p.element_size() for p in model.parameters())
    budget = STACK_BYTES.get(resolve_device(device).type, STACK_BYTES["cpu"])
    return max(1, budget // max(per_model, 1))


def stackable(model: nn.Module) -> bool:
    """True for an nn.Sequential of Flatten (first only), biased Linear, ReLU and Tanh layers."""
    if not isinstance(model, nn.Sequential) or not any(isinstance(m, nn.Linear) for m in model):
        return False
    for i, m in enumerate(model):
        if isinstance(m, nn.Flatten) and i == 0 and m.start_dim == 1 and m.end_dim == -1:
            continue
        if isinstance(m, nn.Linear) and m.bias is not None or type(m) in ACTIVATIONS:
            continue
        return False
    return True


def plain_training(config: TrainConfig) -> bool:
    """True when `config` trains as the stack does: no defense, no label smoothing, the best epoch on the
    validation split (those hook into learn.train's loop only)."""
    return config.defense is None and not config.label_smoothing and config.selection == "best_val"


class StackedNet:
    """K copies of one Sequential architecture, weights stacked on a leading model axis: W (K, in, out), b (K, out).

    (in, out), the transpose of nn.Linear's layout: the forward matmul and the weight gradient then need no copy of
    the weights (with (out, in), torch's CPU bmm copies every weight and its gradient once per step)."""

    def __init__(self, models: list[nn.Module], device: torch.device):
        if not models or not all(stackable(m) for m in models):
            raise ConfigError("only Sequential models of Linear, ReLU and Tanh layers stack; train the others in a row")
        nets = [cast(nn.Sequential, m) for m in models]
        self.names = [name for name, _ in nets[0].named_parameters()]  # 0.weight, 0.bias, ... as params
        self.layers = [type(m) for m in nets[0]]
        self.params: list[torch.Tensor] = []  # W0, b0, W1, b1, ... (leaves with gradients)
        for j, layer in enumerate(nets[0]):
            if isinstance(layer, nn.Linear):
                linears = [cast(nn.Linear, m[j]) for m in nets]  # stackable(): same layers in every model
                weight = torch.stack([lin.weight.detach().T for lin in linears]).to(device).contiguous()
                bias = torch.stack([lin.bias.detach() for lin in linears]).to(device)
                self.params += [weight.requires_grad_(True), bias.requires_grad_(True)]

    @property
    def models(self) -> int:
        return self.params[0].shape[0]

    def __call__(self, x: torch.Tensor, shared: bool = False, params: list[torch.Tensor] | None = None,
                 saved: list[tuple[type[nn.Module], torch.Tensor, torch.Tensor | None]] | None = None) -> torch.Tensor:
        """(K, B, *input) -> (K, B, classes): model k sees x[k]; shared: (B, *input) -> (K, B, classes), all see x.
        params: other stacked weights of the same shapes (the best or averaged ones) instead of the trained ones.
        saved: a list to which every layer appends what its gradient needs (Linear: its input and weight;
        activations: their output), for `loss_backward`."""
        h, p = (x.flatten(1) if shared else x.flatten(2)), iter(self.params if params is None else params)
        for kind in self.layers:
            if kind is nn.Linear:
                weight, bias = next(p), next(p)
                if h.dim() == 2:  # one input for every model (evaluation)
                    h = h.expand(len(weight), *h.shape)
                if saved is not None:
                    saved.append((kind, h, weight))
                h = torch.baddbmm(bias.unsqueeze(1), h, weight)
            elif kind in ACTIVATIONS:
                h = ACTIVATIONS[kind](h)
                if saved is not None:
                    saved.append((kind, h, None))
        return h

    def loss_backward(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training pass written out: the forward and backward of every model's weighted cross-entropy.

        (K, B, *input) rows and (K, B) labels -> (K,) losses (sum over b of weight * ce) and the (K, B, classes)
        logits; each stacked parameter's gradient is left in `.grad`. weight is (K, B), one weight per row (a
        model's mean over a padded batch: mask / count), or one number (1 / B). The gradients are autograd's
        through `__call__` and `F.cross_entropy` (d ce / d logits = softmax - onehot), without recording a graph:
        a small model's step on a CPU is mostly per-operation cost, and this saves a share of it."""
        saved: list[tuple[type[nn.Module], torch.Tensor, torch.Tensor | None]] = []
        grads = iter(reversed(self.params))  # b_last, W_last, ..., b0, W0
        with torch.no_grad():
            logits = self(x, saved=saved)
            scale = weight.unsqueeze(2) if isinstance(weight, torch.Tensor) else weight
            target = y.unsqueeze(2)
            grad = torch.log_softmax(logits, -1)
            picked = grad.gather(2, target)
            losses = (picked * scale).sum((1, 2)).neg_()
            grad.exp_().scatter_add_(2, target, torch.full_like(picked, -1.0)).mul_(scale)  # (softmax - onehot) w
            for i in range(len(saved) - 1, -1, -1):
                kind, seen, weight_i = saved[i]  # seen: the layer's input (Linear) or output (activation)
                if kind is nn.ReLU:  # dz = dh where relu(z) > 0: times sign(h), 1 there and 0 elsewhere
                    grad = grad.mul_(seen.sign())  # (a boolean mask costs ten times as much on a CPU)
                elif kind is nn.Tanh:  # dz = dh (1 - tanh(z)^2)
                    grad = torch.addcmul(grad, grad, seen.square(), value=-1.0)
                else:
                    assert weight_i is not None
                    next(grads).grad = grad.sum(1)
                    next(grads).grad = torch.bmm(seen.transpose(1, 2), grad)
                    if i > 0:
                        grad = torch.bmm(grad, weight_i.transpose(1, 2))
        return losses, logits

    def unstack(self, params: list[torch.Tensor], into: list[nn.Module]) -> list[nn.Module]:
        """`into` (K modules of the stacked architecture: the models the stack was made from, as `train` returns
        the model it was given) holding the stacked `params`, moved to the params' device."""
        for k, model in enumerate(into):
            model.to(params[0].device).load_state_dict(
                {name: (p[k].T if name.endswith("weight") else p[k]).detach() for name, p in zip(self.names, params)})
        return into


def _batches(order: list[torch.Tensor], batch_size: int) -> torch.Tensor:
    """(steps, K, batch_size) row positions (on the CPU), -1 where a model's order has ended."""
    steps = max(math.ceil(len(o) / batch_size) for o in order)
    padded = torch.full((len(order), steps * batch_size), -1, dtype=torch.long)
    for k, o in enumerate(order):
        padded[k, :len(o)] = o
    return padded.view(len(order), steps, batch_size).transpose(0, 1).contiguous()


@torch.no_grad()
def _evaluate(net: StackedNet, x: torch.Tensor, y: torch.Tensor, amp: bool, params: list[torch.Tensor] | None = None,
              positions: torch.Tensor | None = None) -> tuple[list[float], list[float]]:
    """(K,) mean cross-entropy and accuracy of every model on one shared (x, y), or, with positions (K, n) (-1:
    none), model k on the rows positions[k] of (x, y)."""
    k, rows = net.models, max(64, 2 ** 15 // net.models)  # bounded activations: K x rows x width
    loss = torch.zeros(k, device=x.device, dtype=torch.float64)
    correct = torch.zeros(k, device=x.device, dtype=torch.long)
    n = len(x) if positions is None else positions.shape[1]
    for i in range(0, n, rows):
        if positions is None:
            xb, yb, mask = x[i:i + rows], y[i:i + rows], None
        else:
            index = positions[:, i:i + rows]
            mask = index >= 0
            xb, yb = x[index.clamp(min=0)], y[index.clamp(min=0)]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(xb, shared=positions is None, params=params).float()
        yb = yb.expand(k, -1)
        ce = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(k, -1)
        hits = logits.argmax(-1) == yb
        if mask is not None:
            ce, hits = ce * mask, hits & mask
        loss += ce.sum(1).double()
        correct += hits.sum(1)
    sizes = [max(n, 1)] * k if positions is None else (positions >= 0).sum(1).clamp(min=1).tolist()
    return (loss.cpu() / torch.tensor(sizes)).tolist(), [c / m for c, m in zip(correct.tolist(), sizes)]


def _shared_config(configs: list[TrainConfig]) -> TrainConfig:
    fields = [name for name, member in vars(TrainConfig).items()  # what train reads, but the seed
              if isinstance(member, property) and name != "seed"]
    first = [getattr(configs[0], name) for name in fields]
    for c in configs[1:]:
        if [getattr(c, name) for name in fields] != first:
            raise ConfigError("stacked models must share one configuration except their seeds; train them in a row")
    return configs[0]


def train_stacked(models: list[nn.Module], dataset: Dataset, configs: list[TrainConfig],
                  train_indices: list[np.ndarray], *,
                  on_epoch: Callable[[list[dict], Callable[[], dict]], None] | None = None,
                  resume: dict | None = None) -> list[TrainResult]:
    """`train(models[k], dataset, configs[k], train_index=train_indices[k])` for every k, as one stacked model.

    on_epoch(rows, checkpoint) is called after every epoch with one row per model (train's row; `seconds` is the
    model's share of the stacked epoch) and a function returning the stack's state (pass it back as `resume`).
    """
    config = _shared_config(configs)
    if config.schedule not in SCHEDULES:
        raise ConfigError(f"unknown `schedule` {config.schedule!r}; choose from: {', '.join(SCHEDULES)}")
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError(f"`epochs` and `batch_size` must be >= 1, got {config.epochs} and {config.batch_size}")
    if resolve_augment(config.augment, dataset.feature_kind):
        raise ConfigError("augmented images draw crops per model; train these models in a row with `train`")
    if not plain_training(config):
        raise ConfigError("a defense, label smoothing or last-epoch selection hooks into `train` only; train these "
                          "models in a row with `train`")
    start = time.perf_counter()
    device = resolve_device(config.device)
    amp = config.amp if config.amp is not None else device.type == "cuda"
    seeds = [c.seed for c in configs]
    net = StackedNet(models, device)
    k_models = net.models
    rows = np.unique(np.concatenate([np.asarray(i) for i in train_indices]))  # every row some model trains on
    x_rows, y_rows = dataset.x[torch.as_tensor(rows)].to(device), dataset.y[torch.as_tensor(rows)].to(device)
    positions = [torch.as_tensor(np.searchsorted(rows, i), dtype=torch.long) for i in train_indices]
    sizes = torch.tensor([len(p) for p in positions], device=device)
    x_val, y_val = (t.to(device) for t in dataset.subset("val"))
    optimizer = StackedOptimizer(net.params, config)
    scheduler = SCHEDULES[config.schedule](optimizer.holder, config.epochs)
    schedule = swa_schedule(config)
    swa_from = schedule[0] if schedule is not None else None
    swa = [p.detach().clone() for p in net.params] if schedule is not None else None

    state: dict[str, Any] = dict(epoch=0, swa_averaged=0, best_val_acc=[-1.0] * k_models, best_epoch=[0] * k_models,
                 history=[[] for _ in range(k_models)])
    best = [p.detach().clone() for p in net.params]
    if resume is not None:
        if resume.get("models") != k_models:
            raise ConfigError(f"the stacked checkpoint holds {resume.get('models')} models, not {k_models}; "
                              "start the population afresh")
        with torch.no_grad():
            for target, name in ((net.params, "params"), (best, "best"), (swa, "swa")):
                for t, saved in zip(target or [], resume[name] or []):
                    t.copy_(saved)
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        state.update(copy.deepcopy({k: resume[k] for k in state}))

    def checkpoint() -> dict:
        cpu = lambda ts: [t.detach().cpu().clone() for t in ts]  # noqa: E731 (a snapshot, not live tensors)
        return dict(copy.deepcopy(state), models=k_models, params=cpu(net.params), best=cpu(best),
                    swa=cpu(swa) if swa is not None else None, optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict())

    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        epoch_start = time.perf_counter()
        averaging = swa_from is not None and epoch >= swa_from
        if averaging and schedule is not None:  # SWA: a constant learning rate while weights are averaged
            optimizer.group["lr"] = schedule[1]
        # each model's own order: the generator `train` seeds for (its seed, epoch)
        order = [p[torch.randperm(len(p), generator=torch.Generator().manual_seed(s * 100_003 + epoch))]
                 for p, s in zip(positions, seeds)]
        batches = _batches(order, config.batch_size)  # (steps, K, B)
        counts = (batches >= 0).sum(2)  # (steps, K) rows per model and step, known without a device sync
        everyone = (counts > 0).all(1).tolist()
        whole = (counts == config.batch_size).all(1).tolist()  # every model a whole batch: nothing to mask
        index = batches.clamp(min=0).to(device)
        masks, counts = (batches >= 0).to(device), counts.to(device)
        loss_sum = torch.zeros(k_models, device=device)
        correct = torch.zeros(k_models, device=device, dtype=torch.long)
        for step in range(len(batches)):
            # gathered step by step, as `train` does: memory stays at one batch per model, not an epoch per model
            rows_at = index[step].flatten()
            xb = x_rows.index_select(0, rows_at).view(*index.shape[1:], *x_rows.shape[1:])
            yb = y_rows.index_select(0, rows_at).view(index.shape[1:])
            mask, count, masked = masks[step], counts[step], not whole[step]
            first: list[torch.Tensor] = []

            def closure() -> torch.Tensor:
                if not amp:  # written out (autocast's mixed precision goes through autograd)
                    losses, logits = net.loss_backward(xb, yb, mask / count.clamp(min=1).unsqueeze(1) if masked
                                                       else 1.0 / config.batch_size)
                    if not first:
                        first.append(logits)
                    return losses
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = net(xb)
                ce = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none").view(yb.shape)
                # each model's mean over its own batch
                losses = (ce * mask).sum(1) / count.clamp(min=1) if masked else ce.mean(1)
                losses.sum().backward()
                if not first:
                    first.append(logits.detach())
                return losses.detach()

            losses = optimizer.step(closure, None if everyone[step] else count > 0)
            hits = first[0].argmax(-1) == yb
            if masked:
                loss_sum += losses * count
                correct += (hits & mask).sum(1)
            else:
                loss_sum += losses * config.batch_size
                correct += hits.sum(1)
        train_loss = (loss_sum / sizes).tolist()
        for loss in train_loss:
            if not math.isfinite(loss):
                raise TrainingDiverged(epoch, loss)
        lr = optimizer.group["lr"]
        if averaging:  # torch.optim.swa_utils.AveragedModel's running mean, per model
            assert swa is not None  # averaging needs swa_from, and swa exists whenever swa_from is set
            with torch.no_grad():
                for avg, p in zip(swa, net.params):
                    avg.lerp_(p.detach(), 1.0 / (state["swa_averaged"] + 1))
            state["swa_averaged"] += 1
        else:
            scheduler.step()
        val_loss, val_acc = _evaluate(net, x_val, y_val, amp)
        if swa is None:
            improved = torch.tensor([v > b for v, b in zip(val_acc, state["best_val_acc"])], device=device)
            with torch.no_grad():
                for b, p in zip(best, net.params):
                    b.copy_(torch.where(per_model(improved, p), p, b))
            for k in np.flatnonzero(improved.cpu().numpy()).tolist():
                state["best_val_acc"][k], state["best_epoch"][k] = val_acc[k], epoch
        seconds = (time.perf_counter() - epoch_start) / k_models
        acc = [c / n for c, n in zip(correct.tolist(), sizes.tolist())]
        epoch_rows = [dict(epoch=epoch, train_loss=train_loss[k], train_acc=acc[k], val_loss=val_loss[k],
                           val_acc=val_acc[k], lr=lr, seconds=seconds) for k in range(k_models)]
        state["history"] = [[*h, row] for h, row in zip(state["history"], epoch_rows)]
        state["epoch"] = epoch
        if on_epoch is not None:
            on_epoch(epoch_rows, checkpoint)

    final = swa if swa is not None else best
    best_epochs = [config.epochs] * k_models if swa is not None else state["best_epoch"]
    x_test, y_test = (t.to(device) for t in dataset.subset("test"))
    own = torch.full((k_models, int(sizes.max())), -1, dtype=torch.long)  # model k's training rows, padded
    for k, p in enumerate(positions):
        own[k, :len(p)] = p
    splits = (("train", x_rows, y_rows, own.to(device)), ("test", x_test, y_test, None)) + (
        (("val", x_val, y_val, None),) if swa is not None else ())
    accuracy = {name: _evaluate(net, x, y, amp, final, index)[1] for name, x, y, index in splits}
    if swa is None:  # the best weights' validation accuracy: measured when they were the live weights
        accuracy["val"] = list(state["best_val_acc"])
    seconds = (time.perf_counter() - start) / k_models
    return [TrainResult(model=model, best_epoch=best_epochs[k], history=[dict(row) for row in state["history"][k]],
                        train_acc=accuracy["train"][k], val_acc=accuracy["val"][k], test_acc=accuracy["test"][k],
                        seconds=seconds, device=str(device))
            for k, model in enumerate(net.unstack(final, into=models))]
