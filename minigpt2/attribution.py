"""First-order estimates from one backward pass: attribution of every head and neuron, and activation
patching estimated (what TransformerLens users call attribution patching).

Units: log-probabilities summed over the scored positions. Grads hold d loss / d x for the mean cross-entropy
over n scored positions, so d (sum of log p) / d x = -n d loss / d x.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backward import Grads
from .trace import Trace


@dataclass(frozen=True)
class Attribution:
    """d (sum of the scored targets' log-probs) / d (a component's scale) at scale 1: the first-order estimate
    of what ablating it (scale 1 -> 0) costs, the exact total effect's sign (positive: it helps)."""
    heads: np.ndarray      # [L, H] sum over t, s of d/d attn[l, h, t, s] x attn[l, h, t, s]
    neurons: np.ndarray    # [L, m] sum over t of d/d acts[l, t, n] x acts[l, t, n]


def attribution(tr: Trace, g: Grads) -> Attribution:
    """Every head's and neuron's attribution, from the run tr and its Grads g."""
    n = -float(g.n_scored)
    heads = np.einsum("lhts,lhts->lh", g.attn, tr.attn, dtype=np.float64) * n
    neurons = np.stack([np.einsum("tm,tm->m", g.mlp_acts[l], tr.mlp_acts[l], dtype=np.float64)
                        for l in range(tr.n_layers)]) * n                       # per layer: no [L, T, m] temporary
    return Attribution(heads=heads, neurons=neurons)


def resid_patch_estimates(clean: Trace, corrupt: Trace, g: Grads) -> np.ndarray:
    """[L, T] the change in the scored log-prob (summed) when resid_pre[l, t] of clean replaces corrupt's,
    to first order: (clean - corrupt) . d/d resid_pre[l, t], with g the Grads of the corrupt run."""
    L = corrupt.n_layers
    diff = clean.resid_pre[:L] - corrupt.resid_pre[:L]                            # [L, T, D]
    return np.einsum("ltd,ltd->lt", diff, g.resid_pre[:L], dtype=np.float64) * -float(g.n_scored)


def head_patch_estimates(clean: Trace, corrupt: Trace, g: Grads) -> np.ndarray:
    """[L, H] the same for a head's whole output (Edit.head_z of clean's into the corrupt run): the change of
    its output, (z_clean - z_corrupt) W_O, along d/d resid_mid[l] (its block's output) at every position."""
    W_O = corrupt.params.W_O
    rows = []
    for l, (zc, zk) in enumerate(zip(clean.head_outputs(), corrupt.head_outputs())):
        dz = g.resid_mid[l] @ W_O[l].transpose(0, 2, 1)                            # [T, D] @ [H, D, e] -> [H, T, e]
        rows.append(np.einsum("hte,hte->h", zc - zk, dz, dtype=np.float64))
    return np.stack(rows) * -float(g.n_scored)
