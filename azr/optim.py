"""AdamW for `azr.Model`, running in C over the model's parameter arena.

Semantics follow ``torch.optim.AdamW``: decoupled weight decay
(``p -= lr * weight_decay * p``), bias-corrected first and second moments,
and optional global gradient-norm clipping (``torch.nn.utils.clip_grad_norm_``
semantics: gradients are scaled by ``max_grad_norm / (norm + 1e-6)`` when the
norm exceeds ``max_grad_norm``). Weight decay applies to every parameter.
The clipping scale is applied inside the update; the gradient arena itself is
left unscaled.

Gradient accumulation: call ``model.loss_and_backward`` once per micro-batch
(gradients add up), then ``opt.step()`` and ``opt.zero_grad()``.
Learning-rate schedules: set ``opt.lr`` before each step (:func:`lr_at`
gives the warm-up, linear and cosine schedules the trainer uses).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

LR_SCHEDULES = ("constant", "linear", "cosine")


def lr_at(schedule: str, lr: float, done: int, warmup: int = 0, total: int = 0, min_ratio: float = 0.0) -> float:
    """The learning rate of the update that follows ``done`` earlier ones.

    The first ``warmup`` updates rise linearly from 0 (``lr * done /
    warmup``); after them ``"constant"`` keeps ``lr``, ``"linear"`` and
    ``"cosine"`` decay to ``lr * min_ratio`` at update ``total`` and stay
    there. These are the conventions of ``transformers``'
    ``get_{constant,linear,cosine}_schedule_with_warmup`` (with its
    ``min_lr_rate`` for ``min_ratio``), except that the cosine does not rise
    again after ``total``.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule {schedule!r} is not one of {LR_SCHEDULES}")
    if done < warmup:
        return lr * done / max(1, warmup)
    if schedule == "constant":
        return lr
    progress = min(1.0, (done - warmup) / max(1, total - warmup))
    factor = 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return lr * (min_ratio + (1.0 - min_ratio) * factor)


class AdamW:
    """AdamW over all parameters of one `azr.Model`."""

    def __init__(self, model, lr: float = 1e-6, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 max_grad_norm: float | None = 1.0):
        self.model = model
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.max_grad_norm = max_grad_norm
        self._check()

    def _check(self) -> None:
        def num(name, v, lo=0.0, hi=math.inf, lo_open=False):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
                    or v < lo or v > hi or (lo_open and v == lo):
                raise ValueError(f"AdamW: {name} = {v!r} is invalid")
        num("lr", self.lr)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"AdamW: betas must be a pair, got {self.betas!r}")
        num("betas[0]", self.betas[0], 0.0, 1.0)
        num("betas[1]", self.betas[1], 0.0, 1.0)
        if self.betas[0] >= 1.0 or self.betas[1] >= 1.0:
            raise ValueError(f"AdamW: betas must be < 1, got {self.betas!r}")
        num("eps", self.eps, 0.0, lo_open=True)
        num("weight_decay", self.weight_decay)
        if self.max_grad_norm is not None:
            num("max_grad_norm", self.max_grad_norm)

    @property
    def step_count(self) -> int:
        """Number of steps taken (the t of the bias correction)."""
        return int(self.model._engine.adam_step_count())

    def step(self) -> float:
        """Clip, update every parameter, and return the pre-clip global grad norm.

        Raises FloatingPointError (parameters untouched) if the norm is not finite.
        """
        self._check()
        maxn = float(self.max_grad_norm) if self.max_grad_norm else 0.0
        return float(self.model._engine.adamw_step(float(self.lr), float(self.betas[0]),
                                                   float(self.betas[1]), float(self.eps),
                                                   float(self.weight_decay), maxn))

    def zero_grad(self) -> None:
        """Zero the model's gradients."""
        self.model.zero_grad()

    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters, the step count and copies of both moment arenas."""
        m, v = self.model._engine.adam_state()
        return {"step": self.step_count, "lr": self.lr, "betas": tuple(self.betas),
                "eps": self.eps, "weight_decay": self.weight_decay,
                "max_grad_norm": self.max_grad_norm, "exp_avg": m.copy(), "exp_avg_sq": v.copy()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore a `state_dict` (from a model of the same shape)."""
        m, v = self.model._engine.adam_state()
        for key, dst in (("exp_avg", m), ("exp_avg_sq", v)):
            src = np.asarray(d[key], dtype=np.float32)
            if src.shape != dst.shape:
                raise ValueError(f"AdamW state {key!r} has shape {src.shape}, this model needs "
                                 f"{dst.shape}")
            if not np.isfinite(src).all():
                raise ValueError(f"AdamW state {key!r} holds non-finite values")
        step = int(d["step"])
        if step < 0:
            raise ValueError(f"AdamW state 'step' must be >= 0, got {step}")
        m[...] = np.asarray(d["exp_avg"], dtype=np.float32)
        v[...] = np.asarray(d["exp_avg_sq"], dtype=np.float32)
        self.model._engine.set_adam_step_count(step)
        self.lr = d.get("lr", self.lr)
        self.betas = tuple(d.get("betas", self.betas))
        self.eps = d.get("eps", self.eps)
        self.weight_decay = d.get("weight_decay", self.weight_decay)
        self.max_grad_norm = d.get("max_grad_norm", self.max_grad_norm)
        self._check()


__all__ = ["AdamW"]
