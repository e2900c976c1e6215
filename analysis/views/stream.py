"""The residual stream tables: every contribution at one position (stream, with its rollup), and the
direct effects at every position (streams). Both read the trace in the rank space, a block at a time."""
from __future__ import annotations

import numpy as np

from minigpt2.decomposition import BLOCK_OF
from minigpt2.readout import head_effects, ln_final_scale, logit_directions, neuron_effects

from ..report.layout import STREAM_PAGE, scores_column
from ..report.table import Table
from ..search.matches import Matches
from ..search.select import select_topk
from ..search.spaces import show_token
from .context import Context, NeuronMatches


def stream_table(ctx: Context, pm: Matches, mm: Matches, nm: NeuronMatches, pos: int) -> tuple[Table, Table, float]:
    """Every contribution to the final residual at pos, with its direct effect on the logit of the predicted
    token and of the actual next token, what it writes (words) and what it reads (pattern or input words).

    Direct effect of contribution c on token v: ((c - mean c) / std) . (lnf_w * W_E[v]), with std the ln_f scale
    of the whole residual at pos. These effects plus b_U[v] sum exactly to v's logit. Returns the table, its
    rollup (sums by kind, layer and head; the page shows it above the rows) and max |sum of rows -
    resid_pre| (the decomposition error).
    """
    tr, p = ctx.trace, ctx.model.params
    L, T = tr.n_layers, tr.n_tokens
    pos = pos % T
    pred = int(np.argmax(tr.logits[pos]))
    nxt = int(tr.ids[pos + 1]) if pos + 1 < T else None
    d = tr.contributions(L, pos, [pred, pred if nxt is None else nxt])      # rows without their vectors
    error = d.error
    effect = d.effects[:, 0]                                              # [n]
    effect_next = d.effects[:, 1] if nxt is not None else np.full(len(d), np.nan)
    norms = d.norm
    # words: messages reuse the message matches (attention >= 0 keeps the direction), neurons the cached
    # output meanings (negative activations read the bottom words), the rest are searched here.
    other = d.single                                                      # embeddings or patch, b_O, b_out
    om = ctx.matches(*ctx.unembed_index.search(d.single_vectors, ctx.k))
    other_cell = dict(zip(other.tolist(), zip(om.cells.tolist(), om.scored.tolist())))
    labels = d.labels
    shown = [show_token(t) for t in ctx.tokens]                            # once per token, not per message row
    m_sc, p_sc = mm.scored.tolist(), pm.scored.tolist()                    # [L][H][T] Scored, as nested lists
    out_sc, neg_sc, in_sc = nm.outputs.scored.tolist(), nm.negatives.scored.tolist(), nm.inputs.scored.tolist()
    rows = []
    for i, kind, l, h, src, n, w, norm, eff, eff_n in zip(
            range(len(d)), d.kind.tolist(), d.layer_of.tolist(), d.head.tolist(), d.source.tolist(),
            d.neuron.tolist(), d.weight.tolist(), norms.tolist(), effect.tolist(), effect_next.tolist()):
        reads = reads_sc = None
        if kind == "message":
            words, reads = mm.cell(l, h, src), pm.cell(l, h, src)
            words_sc, reads_sc = m_sc[l][h][src], p_sc[l][h][src]
        elif kind == "neuron":
            words = "--" if w == 0 else (nm.outputs if w > 0 else nm.negatives).cell(l, n)
            words_sc = None if w == 0 else (out_sc if w > 0 else neg_sc)[l][n]
            reads, reads_sc = nm.inputs.cell(l, n), in_sc[l][n]
        else:
            words, words_sc = other_cell[i]
        msg = kind == "message"
        rows.append([labels[i], kind, l if l >= 0 else None, h if msg else None, src if msg else None,
                     shown[src] if msg else None, n if kind == "neuron" else None, w, norm, eff,
                     None if nxt is None else eff_n, words, reads, words_sc, reads_sc])
    columns = ["component", "kind", "layer", "head", "source", "source token", "neuron", "weight", "norm",
               "direct effect", "direct effect (actual next)", "words", "reads", scores_column("words"),
               scores_column("reads")]
    by_effect = columns.index("direct effect")
    rows.sort(key=lambda r: -abs(r[by_effect]))
    b_U = float(p.lnf_b @ p.W_E[pred])
    actual = (f"; the actual next token {ctx.vocab.shown[nxt]} gets logit {float(tr.logits[pos, nxt]):.3f}"
              if nxt is not None else "; this is the last position, so there is no actual next token")
    note = (f"Every contribution to the residual at position {pos} ({show_token(ctx.tokens[pos])}) after the last "
            f"layer: {len(d)} rows that sum to it with max error {error:.2e}. Direct effect is each row's share of "
            f"the logit of the predicted token {ctx.vocab.shown[pred]} (the shares plus its bias b_U = "
            f"{b_U:.3f} sum to the logit {float(tr.logits[pos, pred]):.3f}){actual}. 'words' is what a row "
            "writes, 'reads' what it responds to (a message's pattern words; a neuron's input words). The "
            "rollup above sums the direct effects by kind, layer and head. Sorted by |direct effect|.")
    rollup = _rollup(d, effect, effect_next if nxt is not None else None)
    return Table("stream", "Residual stream", columns, rows, note), rollup, error


KIND_NAMES = {"tok_embed": "token embedding", "pos_embed": "position embedding", "message": "messages",
              "neuron": "neurons"}   # as Decomposition.by("kind").labels and the every-position view say


def _rollup(d, effect: np.ndarray, effect_next: np.ndarray | None) -> Table:
    """Direct effects summed by kind, by layer and block, and by head (the 20 largest)."""
    block = np.array([BLOCK_OF[k] for k in d.kind.tolist()])               # the core's one map
    nxt = effect_next if effect_next is not None else np.zeros_like(effect)
    rows = []
    for k in dict.fromkeys(d.kind.tolist()):
        sel = d.kind == k
        rows.append(["kind", KIND_NAMES.get(k, k), float(effect[sel].sum()),
                     float(nxt[sel].sum()) if effect_next is not None else None])
    for l in sorted(set(d.layer_of.tolist()) - {-1}):
        for b, shown in (("attention", "attention"), ("mlp", "MLP")):
            sel = (d.layer_of == l) & (block == b)
            rows.append(["layer", f"L{l} {shown}", float(effect[sel].sum()),
                         float(nxt[sel].sum()) if effect_next is not None else None])
    msg = d.kind == "message"
    heads = sorted({(l, h) for l, h in zip(d.layer_of[msg].tolist(), d.head[msg].tolist())})
    by_head = []
    for l, h in heads:
        sel = msg & (d.layer_of == l) & (d.head == h)
        by_head.append(["head", f"L{l} H{h}", float(effect[sel].sum()),
                        float(nxt[sel].sum()) if effect_next is not None else None])
    by_head.sort(key=lambda r: -abs(r[2]))
    return Table("stream_rollup", "Rollup", ["by", "group", "direct effect", "direct effect (actual next)"],
                 rows + by_head[:20], "Sums of the rows below: by kind, by layer and block, and the 20 heads with "
                 "the largest total direct effect (every head's rows are in stream.csv).")


STREAM_TOP = 10   # per position, in the all-positions view: the largest heads and neurons (streams.csv)


def _top_neurons(tr, p, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The STREAM_TOP neurons of largest |direct effect| along w [T, D] at every position, over all layers:
    (effects [T, k], ids l m + n [T, k]), largest first, ties to the lower id. A running top, one layer's
    [T, m] effects at a time."""
    L, T, m = tr.mlp_acts.shape
    k = min(STREAM_TOP, m)
    top_v, top_i = np.zeros((T, 0), np.float32), np.zeros((T, 0), np.int64)
    for l in range(L):
        nl = neuron_effects(tr.mlp_acts[l], p.W_out[l], w)                  # [T, m]: this layer's neurons
        own = select_topk(np.abs(nl), k)[0]                                 # [T, k] by |effect|, ties to lower
        top_v, top_i = _top_by_size(np.concatenate([top_v, np.take_along_axis(nl, own, 1)], 1),
                                    np.concatenate([top_i, own + l * m], 1), STREAM_TOP)
    return top_v, top_i


def _top_by_size(vals: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k entries of largest |value|, largest first, ties to the lower id: ([T, k], [T, k]).
    (A full sort of the few columns: an argpartition would cut ties at rank k arbitrarily.)"""
    order = np.lexsort((ids, -np.abs(vals)), axis=1)[:, :k]
    return np.take_along_axis(vals, order, 1), np.take_along_axis(ids, order, 1)


def streams_table(ctx: Context) -> Table:
    """The stream's direct effects at every position, for both the predicted and the actual next token:
    sums by kind and by layer and block, then the STREAM_TOP largest heads and neurons. Computed for all
    positions at once from the trace, one layer at a time (no [L, T, m] array, no decomposition); the page
    picks a position."""
    tr, p, cfg = ctx.trace, ctx.model.params, ctx.model.cfg
    L, H, T = tr.attn.shape[:3]
    m = cfg.d_mlp
    pred = tr.predicted
    nxt = np.append(tr.ids[1:], pred[-1])                                   # the last position has no next
    scale = ln_final_scale(tr.resid_pre[L], cfg.layer_norm_eps)             # [T]
    Z = tr.head_outputs()                                                   # L x [H, T, e]
    eff, ws = {}, {}
    for name, tok in (("pred", pred), ("next", nxt)):
        w = ws[name] = logit_directions(p, tok, scale)                      # [T, D]
        b_out = p.b_out @ w.T                                               # [L, T]
        eff[name] = {"embedding": np.einsum("td,td->t", tr.resid_pre[0], w),      # or a first vector
                     "b_O": p.b_O @ w.T, "b_out": b_out,
                     "heads": head_effects(Z, p.W_O, w),                               # [L, H, T]
                     "neurons": np.einsum("ltd,td->lt", tr.mlp_out, w) - b_out}  # [L, T]: mlp_out is their sum
    top_v, top_i = _top_neurons(tr, p, ws["pred"])                          # [T, k] by |effect on pred|
    tl, tn = np.divmod(top_i, m)                                            # [T, k] layer, neuron
    top_next = tr.mlp_acts[tl, np.arange(T)[:, None], tn] * np.einsum("tkd,td->tk", p.W_out[tl, tn], ws["next"])
    cols = {}                                                               # name -> [T] lists of Python floats
    for name, e in eff.items():
        attn_l, mlp_l = e["heads"].sum(axis=1) + e["b_O"], e["neurons"] + e["b_out"]   # [L, T]
        cols[name] = [e["embedding"], e["heads"].sum(axis=(0, 1)), e["b_O"].sum(axis=0), e["neurons"].sum(axis=0),
                      e["b_out"].sum(axis=0)] + [x for l in range(L) for x in (attn_l[l], mlp_l[l])]
        cols[name] = np.stack(cols[name], axis=1).tolist()                  # [T, 5 + 2L]
    components = (["embeddings", "messages", "b_O", "neurons", "b_out"]
                  + [f"L{l} {blk}" for l in range(L) for blk in ("attention", "MLP")])
    groups = ["kind"] * 5 + ["layer"] * (2 * L)
    flat = eff["pred"]["heads"].reshape(L * H, T).T                     # [T, L H]
    top_h = np.argsort(-np.abs(flat), axis=1, kind="stable")[:, :STREAM_TOP]  # [T, top] as l H + h
    h_pred = np.take_along_axis(flat, top_h, 1).tolist()
    h_next = np.take_along_axis(eff["next"]["heads"].reshape(L * H, T).T, top_h, 1).tolist()
    h_names = [f"L{l} H{h}" for l in range(L) for h in range(H)]
    top_v, top_next, tl, tn, top_h = top_v.tolist(), top_next.tolist(), tl.tolist(), tn.tolist(), top_h.tolist()
    rows = []
    for t in range(T):
        last, tok = t == T - 1, show_token(ctx.tokens[t])
        xs = [None] * len(components) if last else cols["next"][t]
        rows += [[t, tok, g, c, None, a, b] for g, c, a, b in zip(groups, components, cols["pred"][t], xs)]
        rows += [[t, tok, "head", h_names[f], rank, a, None if last else b]
                 for rank, (f, a, b) in enumerate(zip(top_h[t], h_pred[t], h_next[t]), 1)]
        rows += [[t, tok, "neuron", f"L{l} N{n}", rank, v, None if last else vx]
                 for rank, (v, l, n, vx) in enumerate(zip(top_v[t], tl[t], tn[t], top_next[t]), 1)]
    return Table("streams", "Stream, every position",
                 ["pos", "token", "by", "component", "rank", "direct effect", "direct effect (actual next)"], rows,
                 "The residual stream after the last layer at every position: direct effects on the predicted "
                 "token's logit and on the actual next token's, summed by kind, then the heads and neurons with "
                 f"the largest effect on the prediction (the page shows {STREAM_PAGE}; streams.csv has "
                 f"{STREAM_TOP} each and the sums by layer). Pick a position above (the 'Residual stream' tab "
                 "has every row of one position: --position).")
