"""train(model, dataset, config) -> TrainResult: the one training loop every optimizer and dataset shares.

Model selection uses the validation split only (never an evaluation set). Data stays on the device; on CUDA
the forward pass runs under bf16 autocast. Shuffling is seeded per (seed, epoch), so a run resumed from an
epoch checkpoint sees the same batches as one that never stopped.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from samprivacy.errors import ConfigError, TrainingDiverged
from samprivacy.learn.data.base import Dataset
from samprivacy.learn.optim import SharpnessAware, make_optimizer


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "sgd"
    base_optimizer: str = "sgd"
    rho: float | None = None  # None: the preset's default (learn.optim.PRESETS)
    lam: float | None = None
    xi: float | None = None
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step | constant, stepped once per epoch
    epochs: int = 30
    batch_size: int = 64
    seed: int = 0
    augment: bool = False  # random 4-pixel translations and horizontal flips, images only
    device: str | None = None  # None: CUDA when available
    amp: bool | None = None  # bf16 autocast; None: on for CUDA


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
    config: dict = field(default_factory=dict)


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
def frozen_batchnorm(model: nn.Module, frozen: bool):
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


def augment_images(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translations by up to 4 pixels (zero padding) and horizontal flips, on the device."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dx, dy = (torch.randint(0, 9, (2,), generator=generator)).tolist()
    out = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], out.flip(3), out)


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


def train(model: nn.Module, dataset: Dataset, config: TrainConfig, *,
          on_epoch: Callable[[dict, Callable[[], dict]], None] | None = None,
          resume: dict | None = None) -> TrainResult:
    """Train `model` on dataset.splits.train, select the best epoch on the validation split.

    on_epoch(row, checkpoint) is called after every epoch with the epoch's metrics and a function returning
    the full training state (pass it back as `resume` to continue after that epoch).
    """
    if config.schedule not in SCHEDULES:
        raise ConfigError(f"unknown `schedule` {config.schedule!r}; choose from: {', '.join(SCHEDULES)}")
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError(f"`epochs` and `batch_size` must be >= 1, got {config.epochs} and {config.batch_size}")
    start = time.perf_counter()
    device = resolve_device(config.device)
    amp = config.amp if config.amp is not None else device.type == "cuda"
    torch.manual_seed(config.seed)
    model = model.to(device)
    x_train, y_train = (t.to(device) for t in dataset.subset("train"))
    x_val, y_val = (t.to(device) for t in dataset.subset("val"))
    optimizer: SharpnessAware = make_optimizer(
        config.optimizer, model.parameters(), base=config.base_optimizer, lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay, rho=config.rho, lam=config.lam, xi=config.xi)
    scheduler = SCHEDULES[config.schedule](optimizer, config.epochs)
    augment = config.augment and dataset.feature_kind == "image"

    state = dict(epoch=0, best_val_acc=-1.0, best_epoch=0, best_state=None, history=[])
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        state.update({k: resume[k] for k in state})

    def checkpoint() -> dict:
        # A snapshot, not live references: training goes on mutating the tensors after this returns.
        return copy.deepcopy(dict(state, model=model.state_dict(), optimizer=optimizer.state_dict(),
                                  scheduler=scheduler.state_dict()))

    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(len(x_train), generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for i in range(0, len(order), config.batch_size):
            xb, yb = x_train[order[i:i + config.batch_size]], y_train[order[i:i + config.batch_size]]
            if augment:
                xb = augment_images(xb, generator)
            passes: list[torch.Tensor] = []

            def closure() -> torch.Tensor:
                with frozen_batchnorm(model, frozen=bool(passes)), \
                        torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(xb)
                    loss = F.cross_entropy(logits.float(), yb)
                loss.backward()
                passes.append(logits.detach())
                return loss.detach()

            loss = optimizer.step(closure)
            loss_sum += loss * len(yb)
            correct += (passes[0].argmax(1) == yb).sum()
        train_loss = loss_sum.item() / len(x_train)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(epoch, train_loss)
        scheduler.step()
        val_loss, val_acc = evaluate(model, x_val, y_val, amp=amp)
        if val_acc > state["best_val_acc"]:
            state.update(best_val_acc=val_acc, best_epoch=epoch,
                         best_state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        row = dict(epoch=epoch, train_loss=train_loss, train_acc=correct.item() / len(x_train), val_loss=val_loss,
                   val_acc=val_acc, lr=optimizer.param_groups[0]["lr"],
                   seconds=time.perf_counter() - epoch_start)
        state["history"] = [*state["history"], row]
        state["epoch"] = epoch
        if on_epoch is not None:
            on_epoch(row, checkpoint)

    model.load_state_dict(state["best_state"])
    x_test, y_test = (t.to(device) for t in dataset.subset("test"))
    return TrainResult(
        model=model, best_epoch=state["best_epoch"], history=copy.deepcopy(state["history"]),
        train_acc=evaluate(model, x_train, y_train, amp=amp)[1], val_acc=evaluate(model, x_val, y_val, amp=amp)[1],
        test_acc=evaluate(model, x_test, y_test, amp=amp)[1], seconds=time.perf_counter() - start,
        device=str(device), config=asdict(config))
