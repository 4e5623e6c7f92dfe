"""train(model, dataset, config) -> TrainResult: the one training loop every optimizer and dataset shares.

Model selection uses the validation split only (never an evaluation set). Data stays on the device; on CUDA
the forward pass runs under bf16 autocast (`amp`). Shuffling is seeded per (seed, epoch), so a run resumed from
an epoch checkpoint sees the same batches as one that never stopped. `train_epoch` is one pass over the training
data; populations (learn.population) call `train` with their own training subsets.

What None means, stated once: `augment` None = random crops and flips for image data, none otherwise; `amp` None =
bf16 autocast on CUDA, off on CPU. SWA (optimizer "swa") averages the weights of every epoch from
floor(swa_start * epochs) + 1 on, at a constant swa_lr (None: the catalog preset's share of lr), recomputes
BatchNorm statistics for the average, and returns the average (no best-epoch selection: the average is what SWA
trains).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samprivacy import catalog
from samprivacy.errors import ConfigError, TrainingDiverged
from samprivacy.learn import defenses
from samprivacy.learn.augment import random_crop_flip
from samprivacy.learn.defenses import advreg, dp, memguard, selena
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.optim import SharpnessAware, make_optimizer


class TrainConfig(Protocol):
    """What `train` reads of a trial's configuration: the fields of these names of spec.TrialConfig, where each is
    defined, described and given its default, once. learn/ runs where pydantic may be absent, so it names them
    here structurally, read-only; any object with these attributes will do."""

    @property
    def optimizer(self) -> str: ...
    @property
    def base_optimizer(self) -> str: ...
    @property
    def rho(self) -> float | None: ...
    @property
    def lam(self) -> float | None: ...
    @property
    def xi(self) -> float | None: ...
    @property
    def lr(self) -> float: ...
    @property
    def momentum(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def schedule(self) -> str: ...
    @property
    def epochs(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def augment(self) -> bool | None: ...
    @property
    def device(self) -> str | None: ...
    @property
    def amp(self) -> bool | None: ...
    @property
    def swa_start(self) -> float | None: ...
    @property
    def swa_lr(self) -> float | None: ...
    @property
    def label_smoothing(self) -> float: ...
    @property
    def selection(self) -> str: ...  # best_val | last
    @property
    def defense(self) -> str | None: ...  # dp | advreg | selena | memguard (learn/defenses), and their parameters:
    @property
    def max_grad_norm(self) -> float | None: ...
    @property
    def noise_multiplier(self) -> float | None: ...
    @property
    def target_epsilon(self) -> float | None: ...
    @property
    def target_delta(self) -> float | None: ...
    @property
    def adv_alpha(self) -> float | None: ...
    @property
    def adv_steps(self) -> int | None: ...
    @property
    def selena_k(self) -> int | None: ...
    @property
    def selena_l(self) -> int | None: ...
    @property
    def memguard_budget(self) -> float | None: ...


@dataclass
class TrainResult:
    model: nn.Module  # with the best-validation weights loaded
    best_epoch: int
    history: list[dict]  # one row per epoch: epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds
    train_acc: float
    val_acc: float
    test_acc: float
    seconds: float
    device: str
    defense_metrics: dict = field(default_factory=dict)  # dp: epsilon, delta, noise_multiplier, ...


SCHEDULES: dict[str, Callable] = {
    "cosine": lambda opt, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs),
    "step": lambda opt, epochs: torch.optim.lr_scheduler.MultiStepLR(opt, [epochs // 2, 3 * epochs // 4], 0.1),
    "constant": lambda opt, epochs: torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0),
}


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"`device` {device!r} is not a torch device; use 'cpu' or 'cuda'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device` is {device!r} but CUDA is not available here; use 'cpu' or leave it unset")
    return resolved


@contextlib.contextmanager
def frozen_batchnorm(model: nn.Module, frozen: bool) -> Iterator[None]:
    """During SAM's second pass BatchNorm must not update its running statistics (momentum 0 keeps them)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if frozen else []
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
             amp: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on (x, y), in eval mode."""
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x[i:i + batch_size])
        total_loss += F.cross_entropy(logits.float(), y[i:i + batch_size], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    return total_loss / max(len(x), 1), correct / max(len(x), 1)


def resolve_augment(augment: bool | None, feature_kind: str) -> bool:
    """Augmentation applies to images only; None turns it on for them."""
    return feature_kind == "image" and (augment is None or augment)


def train_epoch(model: nn.Module, optimizer: SharpnessAware, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                generator: torch.Generator, amp: bool, augment: bool, label_smoothing: float = 0.0,
                soft_targets: torch.Tensor | None = None,
                regularizer: advreg.AdvReg | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over (x, y) in the order `generator` draws; returns (sum of losses, correct count) on the device.

    Accuracy and loss are those of the first pass of each step (at w), as the batch saw them. soft_targets (N, C):
    probability targets instead of y (SELENA's distillation); regularizer: a defense in the loop (AdvReg), whose
    before_step(model, xb, yb) runs before each step and whose penalty(model, logits, yb) joins the loss.
    """
    device = x.device
    order = torch.randperm(len(x), generator=generator).to(device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for i in range(0, len(order), batch_size):
        xb, yb = x[order[i:i + batch_size]], y[order[i:i + batch_size]]
        target = yb if soft_targets is None else soft_targets[order[i:i + batch_size]]
        if regularizer is not None:
            regularizer.before_step(model, xb, yb)
        if augment:
            xb = random_crop_flip(xb, generator)
        passes: list[torch.Tensor] = []

        def closure() -> torch.Tensor:
            with frozen_batchnorm(model, frozen=bool(passes)), \
                    torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(xb)
                loss = F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)
                if regularizer is not None:
                    loss = loss + regularizer.penalty(model, logits, yb)
            loss.backward()
            passes.append(logits.detach())
            return loss.detach()

        loss = optimizer.step(closure)
        loss_sum += loss * len(yb)
        correct += (passes[0].argmax(1) == yb).sum()
    return loss_sum, correct


def swa_schedule(config: TrainConfig) -> tuple[int, float] | None:
    """SWA's first averaged epoch and the constant learning rate while it averages (swa_lr, else the preset's
    share of lr), or None without SWA. One definition for `train` and the stacked trainer."""
    preset = catalog.OPTIMIZERS[config.optimizer].preset
    if not preset.get("averaged"):
        return None
    fraction = preset["swa_start"] if config.swa_start is None else config.swa_start
    lr = config.swa_lr if config.swa_lr is not None else config.lr * preset["swa_lr_scale"]
    return min(config.epochs, math.floor(fraction * config.epochs) + 1), lr


def train(model: nn.Module, dataset: Dataset, config: TrainConfig, *,
          on_epoch: Callable[[dict, Callable[[], dict]], None] | None = None,
          resume: dict | None = None, train_index: np.ndarray | None = None,
          soft_targets: torch.Tensor | None = None) -> TrainResult:
    """Train `model` on dataset.splits.train (or the dataset rows `train_index`), select the best epoch on the
    validation split (or keep the last: selection "last"), and measure test accuracy on the held-out
    non-members (dataset.splits.test). config.defense hooks a defense in (learn/defenses).

    on_epoch(row, checkpoint) is called after every epoch with the epoch's metrics and a function returning
    the full training state (pass it back as `resume` to continue after that epoch). soft_targets (rows of
    train_index, C): train against these probabilities instead of the labels.
    """
    defenses.check(config)
    if config.defense == "selena":
        return selena.train_selena(train, model, dataset, config, train_index=train_index, on_epoch=on_epoch,
                                   resume=resume)
    if config.schedule not in SCHEDULES:
        raise ConfigError(f"unknown `schedule` {config.schedule!r}; choose from: {', '.join(SCHEDULES)}")
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError(f"`epochs` and `batch_size` must be >= 1, got {config.epochs} and {config.batch_size}")
    start = time.perf_counter()
    device = resolve_device(config.device)
    amp = config.amp if config.amp is not None else device.type == "cuda"
    torch.manual_seed(config.seed)
    model = model.to(device)
    index = torch.as_tensor(dataset.splits.train if train_index is None else train_index, dtype=torch.long)
    x_train, y_train = dataset.x[index].to(device), dataset.y[index].to(device)
    reference, selection = defenses.split_validation(config, dataset.splits.val)
    x_val, y_val = dataset.x[selection].to(device), dataset.y[selection].to(device)
    x_ref, y_ref = dataset.x[reference].to(device), dataset.y[reference].to(device)
    if soft_targets is not None:
        soft_targets = soft_targets.to(device)
    optimizer: SharpnessAware = make_optimizer(
        config.optimizer, model.parameters(), base=config.base_optimizer, lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay, rho=config.rho, lam=config.lam, xi=config.xi)
    scheduler = SCHEDULES[config.schedule](optimizer, config.epochs)
    augment = resolve_augment(config.augment, dataset.feature_kind)
    swa = swa_schedule(config)
    swa_from = swa[0] if swa is not None else None
    swa_model = torch.optim.swa_utils.AveragedModel(model) if swa_from is not None else None
    private = dp.DPTraining.attach(
        model, optimizer.base_optimizer, x_train, y_train, batch_size=config.batch_size, epochs=config.epochs,
        max_grad_norm=defenses.option(config, "max_grad_norm"), noise_multiplier=dp.noise_option(config),
        target_epsilon=config.target_epsilon, delta=config.target_delta, seed=config.seed) \
        if config.defense == "dp" else None
    regularizer = advreg.AdvReg(dataset.num_classes, x_ref, y_ref, alpha=defenses.option(config, "adv_alpha"),
                                steps=defenses.option(config, "adv_steps"),
                                seed=config.seed) if config.defense == "advreg" else None

    state: dict[str, Any] = dict(epoch=0, best_val_acc=-1.0, best_epoch=0, best_state=None, history=[])
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if swa_model is not None:
            swa_model.load_state_dict(resume["swa_model"])
        if private is not None:
            private.load_state(resume["private"])
        if regularizer is not None:
            regularizer.load_state(resume["regularizer"])
        state.update({k: resume[k] for k in state})

    def checkpoint() -> dict:
        # A snapshot, not live references: training goes on mutating the tensors after this returns.
        extra = {"swa_model": swa_model.state_dict()} if swa_model is not None else {}
        extra |= {"private": private.state()} if private is not None else {}
        extra |= {"regularizer": regularizer.state()} if regularizer is not None else {}
        return copy.deepcopy(dict(state, model=model.state_dict(), optimizer=optimizer.state_dict(),
                                  scheduler=scheduler.state_dict(), **extra))

    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        epoch_start = time.perf_counter()
        averaging = swa_from is not None and epoch >= swa_from
        if averaging and swa is not None:  # SWA: a constant learning rate while weights are averaged
            for group in optimizer.param_groups:
                group["lr"] = swa[1]
        model.train()
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        if private is not None:  # DP: Opacus's Poisson batches, clipping and noise
            loss_sum, correct, seen = private.epoch(model, amp, config.seed * 100_003 + epoch, config.label_smoothing)
        else:
            loss_sum, correct = train_epoch(model, optimizer, x_train, y_train, batch_size=config.batch_size,
                                            generator=generator, amp=amp, augment=augment,
                                            label_smoothing=config.label_smoothing, soft_targets=soft_targets,
                                            regularizer=regularizer)
            seen = len(x_train)
        train_loss = loss_sum.item() / max(seen, 1)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(epoch, train_loss)
        lr = optimizer.param_groups[0]["lr"]
        if averaging and swa_model is not None:
            swa_model.update_parameters(model)
        else:
            scheduler.step()
        val_loss, val_acc = evaluate(model, x_val, y_val, amp=amp)
        if swa_model is None and val_acc > state["best_val_acc"]:
            state.update(best_val_acc=val_acc, best_epoch=epoch,
                         best_state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=correct.item() / max(seen, 1), val_loss=val_loss,
                   val_acc=val_acc, lr=lr, seconds=time.perf_counter() - epoch_start,
                   **({"epsilon": private.epsilon()} if private is not None else {}))
        state["history"] = [*state["history"], row]
        state["epoch"] = epoch
        if on_epoch is not None:
            on_epoch(row, checkpoint)

    if private is not None:
        private.detach()
    if swa_model is not None:
        model = _averaged(swa_model, x_train, config.batch_size)
        state["best_epoch"] = config.epochs
    elif config.selection == "last":  # early stopping as a choice: the weights the last epoch left
        state["best_epoch"] = config.epochs
    else:
        model.load_state_dict(state["best_state"])
    if config.defense == "memguard":
        model = memguard.MemGuard.fit(model, x_train, x_ref, budget=defenses.option(config, "memguard_budget"), seed=config.seed)
    x_test, y_test = (t.to(device) for t in dataset.subset("test"))
    return TrainResult(
        model=model, best_epoch=state["best_epoch"], history=copy.deepcopy(state["history"]),
        train_acc=evaluate(model, x_train, y_train, amp=amp)[1], val_acc=evaluate(model, x_val, y_val, amp=amp)[1],
        test_acc=evaluate(model, x_test, y_test, amp=amp)[1], seconds=time.perf_counter() - start,
        device=str(device), defense_metrics=private.metrics() if private is not None else {})


def _averaged(swa_model: torch.optim.swa_utils.AveragedModel, x: torch.Tensor, batch_size: int) -> nn.Module:
    """The averaged network, with BatchNorm statistics recomputed on the training data (they are not averages)."""
    batches = (x[i:i + batch_size] for i in range(0, len(x), batch_size))
    torch.optim.swa_utils.update_bn(batches, swa_model, device=x.device)
    return swa_model.module
