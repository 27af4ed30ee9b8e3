"""The reinforcement-learning math of Absolute Zero self-play, over the C core.

Rewards (the paper's tables, with the issue's format penalties)::

    solver:   +1 correct, -0.5 wrong but well-formed, -1 format error
    proposer: 1 - acc when 0 < acc < 1 (acc = solve rate of n rollouts),
              -0.5 for a valid task solved always or never, -1 invalid/malformed

Task-Relative REINFORCE++: every (task type, role) pair has its own baseline;
rewards are normalised inside their group, ``(r - mean) / sqrt(var + eps)``,
with per-sample statistics (default) or the paper implementation's
token-weighted ones (each sequence weighs its response length).

The policy loss is the clipped-ratio surrogate. :func:`policy_loss` returns the
loss and per-token weights ``w`` such that the gradient of the loss equals that
of ``-sum(w * logp)`` -- exactly what ``Model.loss_and_backward(ids, targets,
w)`` computes -- so the trainer never needs autograd.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._native import _core

TASK_TYPES: tuple[str, ...] = ("deduction", "abduction", "induction")
ROLES: tuple[str, ...] = ("propose", "solve")

CORRECT, WRONG, FORMAT_ERROR = 0, 1, 2
VALID, INVALID = 0, 1

ADVANTAGE_MODES = {"per-sample": 0, "token-weighted": 1}
AGGREGATIONS = {"token-mean": 0, "sequence-mean": 1}


def group_id(task: str, role: str) -> int:
    """The advantage group of a (task type, role) pair: ``2 * task + role``."""
    if task not in TASK_TYPES:
        raise ValueError(f"unknown task type {task!r}; expected one of {TASK_TYPES}")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    return 2 * TASK_TYPES.index(task) + ROLES.index(role)


def _i32(name: str, x: object, n: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.size and (a.min() < -(2**31) or a.max() >= 2**31):
        raise ValueError(f"{name} has values outside int32")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries, expected {n}")
    return np.ascontiguousarray(a, dtype=np.int32)


def _f32(name: str, x: object, shape: tuple[int, ...] | None = None) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    return a


def solver_rewards(outcomes: Sequence[int] | np.ndarray) -> np.ndarray:
    """Rewards for solver answers: outcome 0 (correct) -> +1, 1 (wrong) -> -0.5, 2 (format error) -> -1."""
    return _core.rl_solver_rewards(_i32("outcomes", outcomes))


def proposer_rewards(status: Sequence[int] | np.ndarray, n_correct: Sequence[int] | np.ndarray,
                     n_samples: Sequence[int] | np.ndarray) -> np.ndarray:
    """Rewards for proposals from their validity (0 valid, 1 invalid) and learnability counts."""
    s = _i32("status", status)
    return _core.rl_proposer_rewards(s, _i32("n_correct", n_correct, len(s)),
                                     _i32("n_samples", n_samples, len(s)))


def advantages(rewards: Sequence[float] | np.ndarray, groups: Sequence[int] | np.ndarray,
               lengths: Sequence[int] | np.ndarray | None = None, n_groups: int = 6,
               mode: str = "per-sample", eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Task-Relative REINFORCE++ advantages.

    ``groups[i]`` is the (task, role) group of sequence i (:func:`group_id`),
    or -1 to exclude it (advantage 0). ``mode`` is ``"per-sample"`` (each
    sequence counts once) or ``"token-weighted"`` (each counts ``lengths[i]``
    times, as in the paper's implementation). The variance is the unbiased
    one (divided by W - 1, 0 when W <= 1). Returns ``(adv, group_mean,
    group_std)``.
    """
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"advantage mode {mode!r} is not one of {sorted(ADVANTAGE_MODES)}")
    r = _f32("rewards", rewards)
    if r.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {r.shape}")
    g = _i32("groups", groups, len(r))
    ln = None
    if lengths is not None:
        ln = _i32("lengths", lengths, len(r))
    elif mode == "token-weighted":
        raise ValueError("token-weighted advantages need the response lengths")
    return _core.rl_advantages(r, g, ln, int(n_groups), ADVANTAGE_MODES[mode], float(eps))


@dataclass
class LossStats:
    """What :func:`policy_loss` measured (all aggregated like the loss)."""

    loss: float
    pg_loss: float
    entropy: float
    kl: float
    clip_frac: float
    ratio_mean: float
    n_tokens: int
    n_seqs: int


def policy_loss(logp: np.ndarray, old_logp: np.ndarray, adv: np.ndarray, mask: np.ndarray,
                clip_low: float = 0.2, clip_high: float = 0.2, aggregation: str = "token-mean",
                entropy: np.ndarray | None = None, entropy_coef: float = 0.0,
                ref_logp: np.ndarray | None = None, kl_coef: float = 0.0) -> tuple[np.ndarray, LossStats]:
    """Clipped-ratio surrogate and its gradient weights.

    ``logp``, ``old_logp``, ``mask`` are (B, T) (mask nonzero on response
    tokens), ``adv`` is (B,) per-sequence advantages. ``aggregation`` is
    ``"token-mean"`` (all valid tokens of the batch weigh the same) or
    ``"sequence-mean"`` (mean over each sequence's tokens, then over sequences).
    Returns ``(weights (B, T) float32, LossStats)`` with d loss / d logp =
    -weights. See csrc/rl/rl.h for the entropy-bonus and KL estimators.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation {aggregation!r} is not one of {sorted(AGGREGATIONS)}")
    lp = _f32("logp", logp)
    if lp.ndim != 2:
        raise ValueError(f"logp must be (B, T), got shape {lp.shape}")
    B, T = lp.shape
    old = _f32("old_logp", old_logp, (B, T))
    a = _f32("adv", adv, (B,))
    m = np.ascontiguousarray(np.asarray(mask) != 0, dtype=np.uint8)
    if m.shape != (B, T):
        raise ValueError(f"mask has shape {m.shape}, expected {(B, T)}")
    ent = None if entropy is None else _f32("entropy", entropy, (B, T))
    ref = None if ref_logp is None else _f32("ref_logp", ref_logp, (B, T))
    w, st = _core.rl_policy_loss(lp, old, a, m, ent, ref, float(clip_low), float(clip_high),
                                 AGGREGATIONS[aggregation], float(entropy_coef), float(kl_coef))
    return w, LossStats(**st)


__all__ = [
    "ADVANTAGE_MODES", "AGGREGATIONS", "CORRECT", "FORMAT_ERROR", "INVALID", "LossStats", "ROLES",
    "TASK_TYPES", "VALID", "WRONG", "advantages", "group_id", "policy_loss", "proposer_rewards",
    "solver_rewards",
]
