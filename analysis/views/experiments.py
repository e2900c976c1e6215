"""The experiments the essay proposes: ablations, position-0 bias, context signatures, and what sits at
position 0 (total effects and attribution: effects.py). Each returns Tables (or plain arrays) that the page,
the CSVs and the command line share.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from minigpt2.errors import InputError, check_index
from minigpt2.layers import causal_softmax, layer_norm, log_softmax

from ..report.table import Table

# -- naming components on the command line ------------------------------------------------------

_HEAD = re.compile(r"^(\d+)-(\d+)(?::(\d+))?$")
_NEURON = re.compile(r"^(\d+)-(\d+)$")


def parse_head(text: str, cfg) -> tuple[int, int, int | None]:
    """ "5-10" -> (5, 10, None); "5-10:3" -> (5, 10, 3): the head, and optionally one source position."""
    m = _HEAD.match(text.strip())
    if not m:
        raise InputError(f"head {text!r}: write LAYER-HEAD, e.g. 5-10, or LAYER-HEAD:SOURCE, e.g. 5-10:3")
    l, h = check_index(int(m.group(1)), cfg.n_layers, f"head {text}: layer"), int(m.group(2))
    return l, check_index(h, cfg.n_heads, f"head {text}: head"), None if m.group(3) is None else int(m.group(3))


def parse_neuron(text: str, cfg) -> tuple[int, int]:
    """ "2-666" -> (2, 666)."""
    m = _NEURON.match(text.strip())
    if not m:
        raise InputError(f"neuron {text!r}: write LAYER-NEURON, e.g. 2-666")
    l = check_index(int(m.group(1)), cfg.n_layers, f"neuron {text}: layer")
    return l, check_index(int(m.group(2)), cfg.d_mlp, f"neuron {text}: neuron")


# -- 1. interventions ---------------------------------------------------------------------------

def ablation_table(model, ids, edits, tokens: list[str], top: int = 5, logits: tuple | None = None) -> Table:
    """Predictions before and after the edits, and the biggest logit changes at each position.
    logits: (before, after) [T, V] when the caller has run both passes already."""
    before, after = logits if logits is not None else (model.logits(ids), model.logits(ids, edits=edits))
    lp0, lp1 = log_softmax(before), log_softmax(after)
    s = model.token_strings
    rows = []
    for t in range(len(ids)):
        nxt = int(ids[t + 1]) if t + 1 < len(ids) else None
        delta = after[t] - before[t]                                            # [V]
        order = np.argsort(-np.abs(delta), kind="stable")[:top]
        changes = ", ".join(f"{s([int(v)])[0]!r} {delta[v]:+.3f}" for v in order if delta[v] != 0) or "no change"
        p0, p1 = int(np.argmax(before[t])), int(np.argmax(after[t]))
        rows.append([t, "".join(tokens[: t + 1]), s([p0])[0], s([p1])[0],
                     None if nxt is None else s([nxt])[0],
                     None if nxt is None else float(lp0[t, nxt]), None if nxt is None else float(lp1[t, nxt]),
                     changes])
    return Table("ablation", "Ablation", ["pos", "prefix", "predicted before", "predicted after", "actual next",
                                          "log-prob before", "log-prob after", "biggest logit changes"], rows,
                 "Greedy predictions with and without the edits (" + "; ".join(map(str, edits)) + "), the "
                 "log-probability of the actual next token, and the largest logit changes at each position.")


# -- 2. position-0 bias ------------------------------------------------------------------------

def position_scores(model, T: int) -> np.ndarray:
    """Layer 0's pre-softmax scores from the position embeddings alone: [H, T, T] (query t, key s).

    x~ = LN1_0(W_pos[:T]); score = (x~ W_Q + b_Q) . (x~ W_K + b_K) / sqrt(e) = x~_t . p_s + c_s, with the
    pattern p_s built from W_P = W_Q W_K^T / sqrt(e). No mask: entries above the diagonal are never used.
    """
    p, cfg = model.params, model.cfg
    x = layer_norm(p.W_pos[:T], p.ln1_w[0], p.ln1_b[0], cfg.layer_norm_eps)      # [T, D]
    q = np.einsum("td,hde->hte", x, p.W_Q[0]) + p.b_Q[0][:, None]                # [H, T, e]
    k = np.einsum("td,hde->hte", x, p.W_K[0]) + p.b_K[0][:, None]
    return np.einsum("hte,hse->hts", q, k) / np.float32(np.sqrt(cfg.d_head))


def position_tables(model, trace, tokens: list[str]) -> tuple[Table, Table]:
    """Layer 0's attention from position embeddings alone (per head, query x key), and every head's
    measured share of attention on position 0 for this prompt."""
    from ..search.spaces import show_token
    from .tables import GRID_TOKENS

    T = trace.n_tokens
    W = min(T, GRID_TOKENS)
    probs = causal_softmax(position_scores(model, W))                           # [H, W, W]
    cols = [f"{s}:{show_token(tok)}" for s, tok in enumerate(tokens[:W])]
    rows = [[h, cols[t]] + [float(v) if s <= t else None for s, v in enumerate(probs[h, t])]
            for h in range(probs.shape[0]) for t in range(W)]
    long = "" if W == T else f" Positions 0..{W - 1} (experiments.position_scores gives any length)."
    pos0 = Table("position0", "Position bias (layer 0)", ["head", "query"] + cols, rows,
                 "The attention layer 0 would pay from the position embeddings alone (LN1_0(W_pos) through each "
                 "head's W_Q and W_K, causal softmax): rows are queries, columns keys. Heads that park on key 0 "
                 "whatever the tokens are do so by position." + long)
    L, H = trace.attn.shape[:2]
    share = trace.attention_on_0()                                              # [L, H]
    rows = [[l] + share[l].tolist() for l in range(L)]
    on0 = Table("attention_on_0", "Attention on position 0", ["layer"] + [f"head {h}" for h in range(H)], rows,
                "For this prompt: each head's mean attention, over the queries after position 0, on position 0. "
                "Near 1: a head that mostly does nothing (its 'no-op' position).")
    return pos0, on0


# -- 3. context signatures -----------------------------------------------------------------------

def signature(trace, layer: int, head: int, pos: int) -> np.ndarray:
    """cos(message of token pos at head (layer, head), pattern of the same token at each head): [L, H].

    Rows at or before layer are NaN: only later heads can read that message.
    """
    m = trace.messages[layer, head, pos].astype(np.float64)                       # [D]
    P = trace.patterns[:, :, pos].astype(np.float64)                              # [L, H, D]
    cos = P @ m / (np.linalg.norm(P, axis=-1) * np.linalg.norm(m) + 1e-30)
    cos[: layer + 1] = np.nan
    return cos


def find_token(tokens: list[str], word: str) -> int:
    """The first position whose token is word (leading spaces ignored), or InputError listing the tokens."""
    for t, tok in enumerate(tokens):
        if tok.strip() == word.strip():
            return t
    raise InputError(f"no token {word!r} in the prompt; its tokens are {', '.join(repr(x) for x in tokens)}")


# -- 4. what sits at position 0 ---------------------------------------------------------------------

@dataclass
class Variant:
    label: str                 # what was put first ("<|endoftext|>", "\n", "none") or the prompt
    ids: np.ndarray
    tokens: list[str]
    predicted: list[str]       # greedy prediction after each prefix
    correct: int
    total: int
    stream: list[tuple[str, float]]       # the largest direct effects on the last prediction: (label, effect)
    bos_neurons: list[tuple[str, float]]  # the strongest BOS neurons: ("L2 N666", activation at 0)


def variant(model, label: str, ids, top: int = 5, edits=()) -> Variant:
    """One line of compare: predictions, score, the largest direct effects on the last prediction and the
    strongest BOS neurons of ids, run with edits (e.g. a tuned first vector, Edit.resid(0, 0, v))."""
    from .tables import bos_neurons

    trace = model.run(ids, edits)
    pred = trace.predicted
    T = trace.n_tokens
    c = trace.contributions(trace.n_layers, T - 1, [int(pred[-1])])           # the rows' direct effects
    eff = c.effects[:, 0]
    order = np.argsort(-np.abs(eff), kind="stable")[:top]
    labels = c.labels
    first = trace.mlp_acts[:, 0, :]
    correct, total = trace.prediction_score()
    return Variant(label, trace.ids, model.token_strings(trace.ids), model.token_strings(pred), correct, total,
                   [(labels[i], float(eff[i])) for i in order],
                   [(f"L{l} N{n}", float(first[l, n])) for l, n in bos_neurons(trace.mlp_acts)[:top]])


def first_token_ids(model, first: str) -> list[int]:
    """What --first names: "none" nothing, "<|endoftext|>" the BOS token, any other text its tokens."""
    if first == "none":
        return []
    return model.encode(first, bos=False).tolist() if first != "<|endoftext|>" else [model.cfg.bos_token_id]
