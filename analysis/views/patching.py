"""Activation patching, exact and estimated: which position at which layer carries the answer (the
causal-tracing figure), and which heads do.

Two prompts of equal length, CLEAN and CORRUPT. The answer is the clean run's prediction at the last
position, and the metric is its log-probability there. Each clean activation is patched into the corrupt run
alone: resid_pre[l, t] (Edit.resid, the pass resumed at layer l) and each head's whole output (Edit.head_z).
The effect is the patched run's metric minus the corrupt run's: positive where the clean activation brings
the answer back, and at most clean - corrupt where it brings all of it. The estimate is the same to first
order, from one backward pass of the corrupt run (minigpt2.attribution).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minigpt2 import Edit
from minigpt2.attribution import head_patch_estimates, resid_patch_estimates
from minigpt2.backward import backward
from minigpt2.errors import InputError
from minigpt2.layers import log_softmax

from ..report.table import Table
from ..search.spaces import show_token


@dataclass(frozen=True)
class Patching:
    clean_ids: np.ndarray      # [T]
    corrupt_ids: np.ndarray    # [T]
    answer: int                # the clean run's prediction at the last position
    clean: float               # the answer's log-prob at the last position, clean run
    corrupt: float             # the same, corrupt run
    resid: np.ndarray          # [L, T] exact effect of patching clean resid_pre[l, t] into the corrupt run
    resid_estimate: np.ndarray # [L, T] its first-order estimate
    heads: np.ndarray          # [L, H] exact effect of patching a head's clean output
    heads_estimate: np.ndarray # [L, H]


def _metric(logits: np.ndarray, answer: int) -> float:
    return float(log_softmax(logits[-1])[answer])


def patch(model, clean_ids, corrupt_ids, progress: bool = False) -> Patching:
    """Every resid_pre[l, t] (l < L) and every head's output, patched from the clean run into the corrupt one:
    L T + L H resumed passes, and one backward pass for the estimates."""
    from minigpt2.progress import tqdm

    clean_ids, corrupt_ids = np.asarray(clean_ids, np.int64), np.asarray(corrupt_ids, np.int64)
    if len(clean_ids) != len(corrupt_ids):
        raise InputError(f"CLEAN is {len(clean_ids)} tokens and CORRUPT {len(corrupt_ids)}: patching pairs their "
                         "positions, so give prompts of the same length in tokens")
    clean, corrupt = model.run(clean_ids), model.run(corrupt_ids)
    L, H, T = clean.attn.shape[:3]
    answer = int(clean.predicted[-1])
    base = _metric(corrupt.logits, answer)
    jobs = [("resid", l, t) for l in range(L) for t in range(T)] + [("head", l, h) for l in range(L) for h in range(H)]
    z = clean.head_outputs()                                                      # L x [H, T, e]
    resid, heads = np.zeros((L, T)), np.zeros((L, H))
    for kind, l, i in tqdm(jobs, desc="patching", unit="pass", disable=not progress, leave=False):
        edit = Edit.resid(l, i, clean.resid_pre[l, i]) if kind == "resid" else Edit.head_z(l, i, z[l][i])
        got = _metric(model.logits(corrupt_ids, edits=[edit], start=l, resid=corrupt.resid_pre[l]), answer) - base
        (resid if kind == "resid" else heads)[l, i] = got
    targets = np.full(T, -1)
    targets[-1] = answer                                                          # the metric: one log-prob
    g = backward(corrupt, model.cfg, targets)
    return Patching(clean_ids, corrupt_ids, answer, _metric(clean.logits, answer), base, resid,
                    resid_patch_estimates(clean, corrupt, g) + 0.0, heads, head_patch_estimates(clean, corrupt, g) + 0.0)


def position_labels(model, r: Patching) -> list[str]:
    """"t:clean/corrupt" per position ("t:clean" where the two tokens agree)."""
    a, b = model.token_strings(r.clean_ids), model.token_strings(r.corrupt_ids)
    return [f"{t}:{show_token(x)}" + ("" if x == y else f"/{show_token(y)}") for t, (x, y) in enumerate(zip(a, b))]


def patch_tables(model, r: Patching) -> tuple[Table, Table]:
    """The residual patching (one row per layer and position) and the head patching (one per head), each with
    the exact effect and the estimate side by side."""
    a, b = model.token_strings(r.clean_ids), model.token_strings(r.corrupt_ids)
    L, T = r.resid.shape
    rows = [[l, t, show_token(a[t]), show_token(b[t]), float(r.resid[l, t]), float(r.resid_estimate[l, t])]
            for l in range(L) for t in range(T)]
    note = (f"The answer is the clean run's prediction {show_token(model.token_strings([r.answer])[0])!r}; its "
            f"log-prob at the last position is {r.clean:.3f} clean and {r.corrupt:.3f} corrupt. Each row patches "
            "one clean activation into the corrupt run: effect = patched log-prob - corrupt log-prob (exact: "
            "a resumed forward pass; estimate: one backward pass, to first order).")
    resid = Table("patch", "Residual patching", ["layer", "pos", "clean token", "corrupt token", "effect",
                                                 "estimate"], rows, note)
    H = r.heads.shape[1]
    rows = [[l, h, float(r.heads[l, h]), float(r.heads_estimate[l, h])] for l in range(L) for h in range(H)]
    return resid, Table("patch_heads", "Head patching", ["layer", "head", "effect", "estimate"], rows, note)
