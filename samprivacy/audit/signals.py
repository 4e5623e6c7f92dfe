"""Model outputs -> per-example membership signals (loss, confidence, entropy, modified entropy).

`model_logits` queries the target model once per split; `Signals.from_logits` derives every single-query signal
from those logits in float64, so the attacks in threshold.py and nn.py never query the model again.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
import torch

# log(0) is clamped to log(LOG_FLOOR), as in Song & Mittal's reference code (small_value = 1e-30).
LOG_FLOOR = 1e-30


def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def model_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024,
                 device: str | torch.device | None = None) -> torch.Tensor:
    """Logits of `model` on x (N, ...) in eval mode, batched, without gradients -> CPU float32 (N, C).

    device: where to run the model (default: where its parameters are). The model's train/eval mode is restored.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}; pass a positive batch size")
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outs = [model(x[i : i + batch_size].to(device, non_blocking=True)).float().cpu()
                    for i in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was_training)
    if not outs:
        return torch.empty(0, 0)
    return torch.cat(outs)


@dataclass(frozen=True, eq=False)
class Signals:
    """Single-query signals of N examples with C classes; every array is numpy (N,) float64 unless noted.

    labels: (N,) int64 true labels; probs: (N, C) softmax; loss: cross-entropy -log p_y; correct: (N,) bool argmax == y;
    confidence: p_y; entropy: -sum_i p_i log p_i; modified_entropy: Song & Mittal (2021) Mentr (lower for members).
    """

    labels: np.ndarray
    probs: np.ndarray
    loss: np.ndarray
    correct: np.ndarray
    confidence: np.ndarray
    entropy: np.ndarray
    modified_entropy: np.ndarray

    @classmethod
    def from_logits(cls, logits: torch.Tensor, labels: torch.Tensor) -> "Signals":
        """logits: (N, C) tensor or array; labels: (N,) ints in [0, C)."""
        z = torch.as_tensor(logits).detach().cpu().to(torch.float64)
        y = torch.as_tensor(labels).cpu().to(torch.int64)
        if z.ndim != 2 or y.shape != (z.shape[0],):
            raise ValueError(f"logits must be (N, C) and labels (N,), got {tuple(z.shape)} and {tuple(y.shape)}")
        bad = int((~torch.isfinite(z)).any(dim=1).sum())
        if bad:
            raise ValueError(f"logits are NaN or infinite for {bad} examples; the model diverged, retrain it")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
            raise ValueError(f"labels must lie in [0, {z.shape[1]}), got range [{int(y.min())}, {int(y.max())}]")
        log_p = torch.log_softmax(z, dim=1)
        p = log_p.exp()
        log_p_y = log_p.gather(1, y[:, None]).squeeze(1)
        p_y = log_p_y.exp()
        safe_log_p = log_p.clamp_min(np.log(LOG_FLOOR))
        entropy = -(p * safe_log_p).sum(dim=1)
        # Mentr (Song & Mittal 2021, modified prediction entropy): -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i).
        # 1 - p = -expm1(log p) keeps precision when p is within 1e-16 of 1 (an overfit member's p_y).
        log_1m_p = torch.log(-torch.expm1(log_p)).clamp_min(np.log(LOG_FLOOR))
        others = (p * log_1m_p).sum(dim=1) - p_y * log_1m_p.gather(1, y[:, None]).squeeze(1)
        mentr = torch.expm1(log_p_y) * log_p_y.clamp_min(np.log(LOG_FLOOR)) - others
        return cls(
            labels=y.numpy(),
            probs=p.numpy(),
            loss=(-log_p_y).numpy(),
            correct=(z.argmax(dim=1) == y).numpy(),
            confidence=p_y.numpy(),
            entropy=entropy.numpy(),
            modified_entropy=mentr.numpy(),
        )

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def num_classes(self) -> int:
        return self.probs.shape[1]

    def select(self, index: npt.ArrayLike) -> "Signals":
        """Rows `index` (int array or bool mask) of every signal."""
        return Signals(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, parts: list["Signals"]) -> "Signals":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})
