"""The readout: how a piece of the residual stream moves the logits, the one home of the direct effect.

A contribution c to the final residual x at position t moves the logit of token v by its direct effect

    ((c - mean c) / std_t) . (lnf_w * W_E[v])  =  c . w_v,   w_v = (lnf_w * W_E[v] - mean) / std_t,

with std_t the final LayerNorm's scale of the whole residual x (frozen: the contribution's share, as
TransformerLens's apply_ln_to_stack with tokens_to_residual_directions does). The centring moves from c to
the direction because it is a symmetric projection. The effects of all of x's parts, plus the token's bias
b_U[v] = lnf_b . W_E[v], sum exactly to the logit. For a residual before the last layer (the logit lens)
std_t is that residual's own scale.

Heads are read in their rank-e space: head h's output at t is z[h, t] W_O[h], with z = attn @ v, so its
direct effect along w is z[h, t] . (W_O[h] w) and no [H, T, D] array is ever made.
"""
from __future__ import annotations

import numpy as np

from .layers import inv_std
from .weights import Params


def ln_final_scale(resid: np.ndarray, eps: float) -> np.ndarray:
    """[...] 1 / std of residual vectors resid [..., D]: the scale ln_f applies to them (then frozen)."""
    return inv_std(resid, eps)[..., 0]


def logit_directions(p: Params, tokens, scale) -> np.ndarray:
    """[..., D] the directions w with c . w = c's direct effect on each token's logit (see the module doc).

    tokens [...] token ids; scale: ln_final_scale of the residual each token's logit is read from, a number
    or an array of tokens' shape (one position per token)."""
    w = p.lnf_w * p.W_E[np.asarray(tokens, np.int64)]                      # [..., D]
    w -= w.mean(axis=-1, keepdims=True)                                     # the centring, moved across
    w *= np.asarray(scale, np.float32)[..., None]
    return w


def logit_bias(p: Params, token: int) -> float:
    """b_U[token] = lnf_b . W_E[token]: the part of a logit no contribution writes."""
    return float(p.lnf_b @ p.W_E[int(token)])


def attended_values(attn: np.ndarray, values: np.ndarray, n: int) -> list[np.ndarray]:
    """Each layer's attention-weighted values at the first n positions: L x [H, n, e] = attn[l, :, :n] @ v[l].
    A head's output there is this times W_O[h] (its messages, weighted, in the rank-e space)."""
    return [attn[l, :, :n] @ values[l] for l in range(attn.shape[0])]          # [H, n, T] @ [H, T, e]


def head_effects(Z: list[np.ndarray], W_O: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[L, H, n] each head's direct effect at each position t along w[t] [n, D]: Z[l][h, t] . (W_O[l, h] w_t)."""
    return np.stack([np.einsum("hte,het->ht", Z[l], W_O[l] @ w.T) for l in range(len(Z))])   # [H, e, D] @ [D, n]


def neuron_effects(acts: np.ndarray, W_out: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[n, m] one layer's neurons' direct effects at n positions: acts [n, m] x (W_out [m, D] . w [n, D])."""
    return acts * (w @ W_out.T)                                                   # [n, D] @ [D, m]
