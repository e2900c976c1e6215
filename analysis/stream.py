"""The residual stream tables: every contribution at one position (stream, with its rollup), and the
direct effects at every position (streams). Both read the trace in the rank space, a block at a time."""
from __future__ import annotations

import numpy as np

from minigpt2.edits import ResidEdit
from minigpt2.layers import inv_std

from .context import Context, NeuronMatches
from .matches import Matches, show_token
from .table import Table


def stream_table(ctx: Context, pm: Matches, mm: Matches, nm: NeuronMatches, pos: int) -> tuple[Table, float]:
    """Every contribution to the final residual at pos, with its direct effect on the logit of the predicted
    token and of the actual next token, what it writes (words) and what it reads (pattern or input words).

    Direct effect of contribution c on token v: ((c - mean c) / std) . (lnf_w * W_E[v]), with std the ln_f scale
    of the whole residual at pos. These effects plus b_U[v] sum exactly to v's logit. A rollup (sums by kind,
    layer and head) sits above the rows. Returns the table and max |sum of rows - resid_pre| (the
    decomposition error).
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
    other = np.flatnonzero(~np.isin(d.kind, ("message", "neuron")))
    om = ctx.matches(*ctx.unembed_index.search(_bias_rows(tr, d, other, pos), ctx.k))
    other_cell = dict(zip(other.tolist(), om.cells.tolist()))
    labels = d.labels
    rows = []
    for i, kind, l, h, src, n, w, norm, eff, eff_n in zip(
            range(len(d)), d.kind.tolist(), d.layer_of.tolist(), d.head.tolist(), d.source.tolist(),
            d.neuron.tolist(), d.weight.tolist(), norms.tolist(), effect.tolist(), effect_next.tolist()):
        reads = None
        if kind == "message":
            words, reads = mm.cell(l, h, src), pm.cell(l, h, src)
        elif kind == "neuron":
            words = "--" if w == 0 else (nm.outputs if w > 0 else nm.negatives).cell(l, n)
            reads = nm.inputs.cell(l, n)
        else:
            words = other_cell[i]
        msg = kind == "message"
        rows.append([labels[i], kind, l if l >= 0 else None, h if msg else None, src if msg else None,
                     show_token(ctx.tokens[src]) if msg else None, n if kind == "neuron" else None, w, norm, eff,
                     None if nxt is None else eff_n, words, reads])
    columns = ["component", "kind", "layer", "head", "source", "source token", "neuron", "weight", "norm",
               "direct effect", "direct effect (actual next)", "words", "reads"]
    by_effect = columns.index("direct effect")
    rows.sort(key=lambda r: -abs(r[by_effect]))
    b_U = float(p.lnf_b @ p.W_E[pred])
    actual = (f"; the actual next token {ctx.vocab.strings[nxt]!r} gets logit {float(tr.logits[pos, nxt]):.3f}"
              if nxt is not None else "; this is the last position, so there is no actual next token")
    note = (f"Every contribution to the residual at position {pos} ({show_token(ctx.tokens[pos])}) after the last "
            f"layer: {len(d)} rows that sum to it with max error {error:.2e}. Direct effect is each row's share of "
            f"the logit of the predicted token {ctx.vocab.strings[pred]!r} (the shares plus its bias b_U = "
            f"{b_U:.3f} sum to the logit {float(tr.logits[pos, pred]):.3f}){actual}. 'words' is what a row "
            "writes, 'reads' what it responds to (a message's pattern words; a neuron's input words). The "
            "rollup above sums the direct effects by kind, layer and head. Sorted by |direct effect|.")
    rollup = _rollup(d, effect, effect_next if nxt is not None else None)
    def tip(r, reads=False):
        kind, l, h, src, n, w = r[1], r[2], r[3], r[4], r[6], r[7]
        if kind == "message":
            return (pm if reads else mm).tip(ctx.vocab, l, h, src)
        if kind == "neuron":
            return nm.inputs.tip(ctx.vocab, l, n) if reads else \
                (nm.outputs if w > 0 else nm.negatives).tip(ctx.vocab, l, n)
        return None if reads else other_tip.get(r[0])

    other_tip = {labels[i]: om.tip(ctx.vocab, j) for j, i in enumerate(other.tolist())}
    table = Table("stream", "Residual stream", columns, rows, note, html_limit=200, before=(rollup,),
                  tips={"words": tip, "reads": lambda r: tip(r, reads=True)})
    return table, error


def _bias_rows(tr, d, rows: np.ndarray, pos: int) -> np.ndarray:
    """The vectors of the few rows that are neither messages nor neurons: embeddings, biases, a patch."""
    p = tr.params
    patch = {e.layer: e.vector for e in tr.edits if isinstance(e, ResidEdit) and e.pos == pos}
    pick = {"tok_embed": lambda l: p.W_E[tr.ids[pos]], "pos_embed": lambda l: p.W_pos[pos],
            "b_O": lambda l: p.b_O[l], "b_out": lambda l: p.b_out[l], "patch": lambda l: patch[l]}
    return np.stack([pick[str(d.kind[i])](int(d.layer_of[i])) for i in rows])


KIND_NAMES = {"tok_embed": "token embedding", "pos_embed": "position embedding", "message": "messages",
              "neuron": "neurons"}   # as Decomposition.by("kind").labels and the every-position view say


def _rollup(d, effect: np.ndarray, effect_next: np.ndarray | None) -> Table:
    """Direct effects summed by kind, by layer and block, and by head (the 20 largest)."""
    block = np.where(np.isin(d.kind, ("message", "b_O")), "attention",
                     np.where(np.isin(d.kind, ("neuron", "b_out")), "MLP", "embedding"))
    nxt = effect_next if effect_next is not None else np.zeros_like(effect)
    rows = []
    for k in dict.fromkeys(d.kind.tolist()):
        sel = d.kind == k
        rows.append(["kind", KIND_NAMES.get(k, k), float(effect[sel].sum()),
                     float(nxt[sel].sum()) if effect_next is not None else None])
    for l in sorted(set(d.layer_of.tolist()) - {-1}):
        for b in ("attention", "MLP"):
            sel = (d.layer_of == l) & (block == b)
            rows.append(["layer", f"L{l} {b}", float(effect[sel].sum()),
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
                 "the largest total direct effect (the CSV has every head).")


STREAM_TOP = 10   # per position, in the all-positions view: the largest heads and neurons (streams.csv)
STREAM_PAGE = 5   # and in the page


def _top_by_size(vals: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k entries of largest |value|, largest first, ties to the lower id: ([T, k], [T, k])."""
    if vals.shape[1] > k:
        part = np.argpartition(-np.abs(vals), k - 1, axis=1)[:, :k]
        vals, ids = np.take_along_axis(vals, part, 1), np.take_along_axis(ids, part, 1)
    order = np.lexsort((ids, -np.abs(vals)), axis=1)
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
    scale = inv_std(tr.resid_pre[L], cfg.layer_norm_eps)[:, 0]              # [T]
    eff, ws = {}, {}
    top_v = np.zeros((T, 0), np.float32)
    top_i = np.zeros((T, 0), np.int64)
    for name, tok in (("pred", pred), ("next", nxt)):
        w = p.lnf_w * p.W_E[tok]                                            # [T, D]
        w = ws[name] = (w - w.mean(axis=1, keepdims=True)) * scale[:, None] # centring moved onto w
        heads = np.empty((L, H, T), np.float32)
        n_sum = np.empty((L, T), np.float32)                                # each layer's neurons, summed
        for l in range(L):
            VW = p.W_O[l] @ w.T                                             # [H, e, T]: W_O w_t, rank space
            for h in range(H):                                              # a head at a time: [S, T], not [H, S, T]
                M = tr.values[l, h] @ VW[h]                                 # [S, T]: m_s . w_t
                heads[l, h] = np.einsum("ts,st->t", tr.attn[l, h], M)
            nl = tr.mlp_acts[l] * (w @ p.W_out[l].T)                        # [T, m]: this layer's neurons
            n_sum[l] = nl.sum(axis=1)
            if name == "pred":                                              # keep only the running top
                k = min(STREAM_TOP, m)
                own = np.argpartition(-np.abs(nl), k - 1, axis=1)[:, :k]    # this layer's top k, [T, k]
                top_v, top_i = _top_by_size(np.concatenate([top_v, np.take_along_axis(nl, own, 1)], 1),
                                            np.concatenate([top_i, own + l * m], 1), STREAM_TOP)
        eff[name] = {"embedding": np.einsum("td,td->t", p.W_E[tr.ids] + p.W_pos[:T], w),
                     "b_O": p.b_O @ w.T, "b_out": p.b_out @ w.T, "heads": heads, "neurons": n_sum}
    tl, tn = np.divmod(top_i, m)                                            # [T, k] layer, neuron
    top_next = tr.mlp_acts[tl, np.arange(T)[:, None], tn] * np.einsum("tkd,td->tk", p.W_out[tl, tn], ws["next"])
    rows = []
    for t in range(T):
        last = t == T - 1
        e, x = eff["pred"], eff["next"]

        def row(group, component, a, b, rank=None):
            rows.append([t, show_token(ctx.tokens[t]), group, component, rank, float(a),
                         None if last else float(b)])
        row("kind", "embeddings", e["embedding"][t], x["embedding"][t])
        row("kind", "messages", e["heads"][:, :, t].sum(), x["heads"][:, :, t].sum())
        row("kind", "b_O", e["b_O"][:, t].sum(), x["b_O"][:, t].sum())
        row("kind", "neurons", e["neurons"][:, t].sum(), x["neurons"][:, t].sum())
        row("kind", "b_out", e["b_out"][:, t].sum(), x["b_out"][:, t].sum())
        for l in range(L):
            row("layer", f"L{l} attention", e["heads"][l, :, t].sum() + e["b_O"][l, t],
                x["heads"][l, :, t].sum() + x["b_O"][l, t])
            row("layer", f"L{l} MLP", e["neurons"][l, t] + e["b_out"][l, t], x["neurons"][l, t] + x["b_out"][l, t])
        top_h = np.argsort(-np.abs(e["heads"][:, :, t]).reshape(-1), kind="stable")[:STREAM_TOP]
        for rank, f in enumerate(top_h.tolist(), 1):
            l, h = divmod(f, H)
            row("head", f"L{l} H{h}", e["heads"][l, h, t], x["heads"][l, h, t], rank)
        for rank, (v, l, n, vx) in enumerate(zip(top_v[t].tolist(), tl[t].tolist(), tn[t].tolist(),
                                                 top_next[t].tolist()), 1):
            row("neuron", f"L{l} N{n}", v, vx, rank)
    return Table("streams", "Stream, every position",
                 ["pos", "token", "by", "component", "rank", "direct effect", "direct effect (actual next)"], rows,
                 "The residual stream after the last layer at every position: direct effects on the predicted "
                 "token's logit and on the actual next token's, summed by kind, then the heads and neurons with "
                 f"the largest effect on the prediction (the page shows {STREAM_PAGE}; streams.csv has "
                 f"{STREAM_TOP} each and the sums by layer). Pick a position above (the 'Residual stream' tab "
                 "has every row of one position: --position).",
                 select="pos", group_by=("pos",),
                 html_when=lambda r: r[2] == "kind" or (r[4] is not None and r[4] <= STREAM_PAGE))
