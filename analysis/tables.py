"""One function per table of the essay. Each returns a Table: plain rows a notebook or a CSV can take.

Inputs are the Trace and the precomputed matches; nothing here formats HTML (report.py does).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from minigpt2.layers import inv_std

from .neurons import NeuronMeanings
from .knn import select_topk
from .lowrank import MIN_TOKENS, head_topk
from .matches import Matches, join_words
from .spaces import Vocab


@dataclass
class Table:
    name: str                 # file stem: patterns -> patterns.csv
    title: str
    columns: list[str]
    rows: list[list]
    note: str = ""
    heat: tuple[str, ...] = ()          # columns shown as a heat map (0 white, 0.5 green, >=1 red)
    html_limit: int | None = None       # the HTML shows the first rows only, and counts the rest
    pivot: tuple | None = None          # HTML layout: (row key columns, column key, value column)
    zeros_as_dashes: bool = False       # exact 0.0 displays as "--" (as in the essay)

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def to_csv(self, path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(self.columns)
            for r in self.rows:
                w.writerow([csv_safe(display(v, digits=7)) for v in r])   # float32's precision; zeros stay 0

    def _repr_html_(self) -> str:
        from .report import table_html

        return table_html(self)

    def __len__(self) -> int:
        return len(self.rows)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_safe(v):
    """A cell a spreadsheet will not evaluate: text starting with = + - @ tab or CR gets a leading ',
    unless it is a plain number ("-1.5" stays a number). OWASP's rule against CSV injection."""
    if isinstance(v, str) and v.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(v):
        return "'" + v
    return v


def display(v, zeros_as_dashes: bool = False, digits: int = 4):
    """A cell as text: None blank, exact zeros "--" where asked, floats to `digits` significant digits."""
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        if zeros_as_dashes and v == 0.0:
            return "--"
        return f"{float(v):.{digits}g}"
    return v


@dataclass
class Context:
    """One prompt's run, as the tables need it."""
    model: object
    trace: object
    vocab: Vocab
    tokens: list[str]          # [T] each token of the prompt decoded alone
    k: int = 10
    metric: str = "cosine"
    bias_threshold: float = 2.0
    use_cache: bool = True     # disk cache for neuron meanings and projected head vocabularies
    progress: bool = False

    def matches(self, ids, scores) -> Matches:
        return Matches.make(ids, scores, self.vocab, self.bias_threshold)

    @cached_property
    def unembed_index(self):
        """The words as the residual stream's readout sees them (lnf_w * W_E), built once per analysis."""
        return self.vocab.unembed_index(self.model.params.lnf_w, self.metric)

    def token_columns(self) -> list[str]:
        return [f"{t}:{s}" for t, s in enumerate(self.tokens)]


# -- head vectors -------------------------------------------------------------------------------

def pattern_matches(ctx: Context) -> Matches:
    """Top words of every pattern p[l, h, t] against LN1_l(W_E). Rows ordered (l, h, t)."""
    tr = ctx.trace
    if tr.n_tokens >= MIN_TOKENS:   # low rank: rank k / sqrt(e) against LN1_l(W_E) W_Q[h]
        coords = tr.k * np.float32(1 / np.sqrt(tr.k.shape[-1]))
        return ctx.matches(*head_topk(ctx.model, ctx.vocab, "pattern", coords, tr.patterns, ctx.k, ctx.metric,
                                      ctx.use_cache, ctx.progress))
    p = ctx.model.params
    L, H, T, D = tr.patterns.shape
    ids, scores = np.empty((L, H * T, ctx.k), np.int64), np.empty((L, H * T, ctx.k), np.float32)
    for l in range(L):
        index = ctx.vocab.ln_index(p.ln1_w[l], p.ln1_b[l], ctx.metric)           # LN1_l(W_E[words])
        ids[l], scores[l] = index.search(tr.patterns[l].reshape(H * T, D), ctx.k)
    return ctx.matches(ids.reshape(-1, ctx.k), scores.reshape(-1, ctx.k))


def message_matches(ctx: Context) -> Matches:
    """Top words of every message m[l, h, t] against lnf_w * W_E. Rows ordered (l, h, t)."""
    tr = ctx.trace
    if tr.n_tokens >= MIN_TOKENS:   # low rank: rank v against (lnf_w * W_E) W_O[h]^T
        return ctx.matches(*head_topk(ctx.model, ctx.vocab, "message", tr.v, tr.messages, ctx.k, ctx.metric,
                                      ctx.use_cache, ctx.progress))
    return ctx.matches(*ctx.unembed_index.search(tr.messages.reshape(-1, tr.messages.shape[-1]), ctx.k))


def _head_table(ctx: Context, m: Matches, name: str, title: str, note: str) -> Table:
    L, H, T = ctx.trace.attn.shape[:3]
    rows, i = [], 0
    for l in range(L):
        for h in range(H):
            for t in range(T):
                rows.append([l, h, t, ctx.tokens[t], m.cells[i], round(float(m.bias_z[i]), 3),
                             join_words(m.words(i, ctx.vocab))])
                i += 1
    return Table(name, title, ["layer", "head", "pos", "token", "words", "bias_z", "matches"], rows, note,
                 pivot=(("layer", "head"), "pos", "words"))


def patterns_table(ctx: Context, pm: Matches) -> Table:
    return _head_table(ctx, pm, "patterns", "Patterns",
                       "The pattern each token leaves behind at each head, compared with LN1 of that layer "
                       "applied to the vocabulary. Later tokens attend to it when they resemble these words.")


def messages_table(ctx: Context, mm: Matches) -> Table:
    return _head_table(ctx, mm, "messages", "Messages",
                       "The message each token leaves behind at each head (W_V W_O), compared with the "
                       "vocabulary as the final LayerNorm reads it (ln_f gain x W_E).")


ATTENDED_CELLS = 2_000_000      # attended.csv: whole heads up to this many attention cells
ATTENDED_HTML_CELLS = 200_000   # the page: a browser stays responsive


def attended_table(ctx: Context, pm: Matches, mm: Matches) -> Table:
    """Per head and source token: its pattern words, its message words, and the attention each query gave it.

    Heads come most interesting first: least attention parked on position 0 (the essay's "no-op" heads
    attend there). Each head is T rows of T attention columns, so a long prompt keeps whole heads up to
    ATTENDED_CELLS cells (the note says how many); trace.attn always has all of them.
    """
    tr = ctx.trace
    L, H, T = tr.attn.shape[:3]
    to_first = tr.attn[:, :, 1:, 0].mean(axis=2) if T > 1 else np.zeros((L, H))   # [L, H]
    order = np.argsort(to_first.reshape(-1), kind="stable").tolist()
    n_heads = max(1, min(L * H, ATTENDED_CELLS // (T * T)))
    rows = []
    for flat in order[:n_heads]:
        l, h = divmod(flat, H)
        a = tr.attn[l, h].T.tolist()                                      # [source][query]
        for s_ in range(T):
            i = flat * T + s_
            rows.append([l, h, s_, ctx.tokens[s_], pm.cells[i], mm.cells[i]]
                        + [None] * s_ + a[s_][s_:])
    kept = "" if n_heads == L * H else (f" This prompt is long: the table keeps the {n_heads} of {L * H} heads that "
                                        "attend least to position 0 (Trace.attn has them all).")
    return Table("attended", "Attended messages",
                 ["layer", "head", "source", "token", "pattern", "message"] + ctx.token_columns(), rows,
                 "Each row is a context token at one head. The columns on the right are the attention each "
                 "query token gave it: which patterns were matched, which messages were picked up. Heads are "
                 "ordered by how little attention they park on position 0, most interesting first." + kept,
                 heat=tuple(ctx.token_columns()), html_limit=max(T, ATTENDED_HTML_CELLS // (T + 6) // T * T))


# -- neurons ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NeuronMatches:
    """The cached neuron meanings as Matches, rows ordered (layer, neuron)."""
    inputs: Matches      # W_in columns vs LN2_l(W_E)
    outputs: Matches     # W_out rows vs lnf_w * W_E: what a positive activation writes
    negatives: Matches   # -W_out rows: what a negative activation writes


def neuron_matches(ctx: Context, nm: NeuronMeanings) -> NeuronMatches:
    k = nm.in_ids.shape[-1]
    return NeuronMatches(*(ctx.matches(i.reshape(-1, k), s.reshape(-1, k)) for i, s in
                           ((nm.in_ids, nm.in_scores), (nm.out_ids, nm.out_scores), (nm.neg_ids, nm.neg_scores))))


def neurons_table(ctx: Context, nm: NeuronMatches) -> Table:
    """Every neuron: static input/output words, and this prompt's activation at each token.

    Sorted by effect = max over tokens of |activation| x ||W_out row||, largest first.
    """
    acts = ctx.trace.mlp_acts                                             # [L, T, m]
    L, T, m = acts.shape
    W_out = ctx.model.params.W_out
    out_norm = np.sqrt(np.einsum("lmd,lmd->lm", W_out, W_out))            # [L, m]
    effect = np.abs(acts).max(axis=1) * out_norm                          # [L, m]
    cin, cout = nm.inputs.cells, nm.outputs.cells
    acts_ln = acts.transpose(0, 2, 1).reshape(L * m, T).tolist()          # [L m, T]
    eff = effect.reshape(-1).tolist()
    rows = []
    for flat in np.argsort(-effect.reshape(-1), kind="stable").tolist():
        l, n = divmod(flat, m)
        rows.append([l, n, cin[flat], cout[flat], eff[flat]] + acts_ln[flat])
    return Table("neurons", "FFN neurons",
                 ["layer", "neuron", "input words", "output words", "effect"] + ctx.token_columns(), rows,
                 "Input words: what the neuron looks for (W_in column vs LN2 of the vocabulary). Output words: "
                 "what it writes (W_out row vs ln_f gain x W_E). These never change with the prompt. "
                 "Activations per token; exact zeros show as --. Sorted by effect = max |activation| x ||W_out||.",
                 heat=tuple(ctx.token_columns()), html_limit=150, zeros_as_dashes=True)


def bos_neurons_table(ctx: Context, nm: NeuronMatches, limit: int = 40) -> Table:
    """Neurons that fire strongly at position 0 and weakly everywhere else (like the essay's 2-666)."""
    acts = ctx.trace.mlp_acts                                             # [L, T, m]
    L, T, m = acts.shape
    first = acts[:, 0, :]                                                 # [L, m]
    rest = np.abs(acts[:, 1:, :]).max(axis=1) if T > 1 else np.zeros_like(first)
    chosen = np.argwhere((first > 0) & (rest <= 0.25 * first))
    chosen = sorted(chosen.tolist(), key=lambda ln: -first[ln[0], ln[1]])[:limit]
    cin, cout = nm.inputs.cells, nm.outputs.cells
    rows = [[l, n, float(first[l, n]), float(rest[l, n]), cout[l * m + n], cin[l * m + n]]
            + [float(a) for a in acts[l, :, n]] for l, n in chosen]
    return Table("bos_neurons", "BOS neurons",
                 ["layer", "neuron", "activation at 0", "max |activation| elsewhere", "output words",
                  "input words"] + ctx.token_columns(), rows,
                 f"Neurons whose activation at position 0 ({ctx.tokens[0]!r}) is positive and at least 4x their "
                 "largest activation anywhere else, strongest first. Position 0 sees no context, so these "
                 "contributions are the same for every prompt that starts with this token.",
                 heat=tuple(ctx.token_columns()), zeros_as_dashes=True)


# -- residual stream ----------------------------------------------------------------------------

def logit_lens_top(ctx: Context, k: int) -> np.ndarray:
    """Top-k token ids of ln_f(resid_pre[l]) @ W_E^T for every layer and token: [L+1, T, k].

    resid_pre[L] gives the model's own logits. All layers go through one unembedding matmul.
    """
    from minigpt2.forward import unembed
    tr = ctx.trace
    L1, T, D = tr.resid_pre.shape
    out = np.empty((L1 * T, k), np.int64)
    rows = max(1, (256 << 20) // (4 * ctx.model.cfg.d_vocab))                     # bounded memory for long prompts
    flat = tr.resid_pre.reshape(L1 * T, D)
    for a in range(0, L1 * T, rows):
        out[a:a + rows] = select_topk(np.ascontiguousarray(unembed(flat[a:a + rows], ctx.model.params,
                                                                   ctx.model.cfg.layer_norm_eps)), k)[0]
    return out.reshape(L1, T, k)


def evolution_tables(ctx: Context) -> tuple[Table, Table]:
    top = logit_lens_top(ctx, 10)                                         # [L+1, T, 10]
    L = top.shape[0] - 1
    names = [f"layer {l}" for l in range(L)] + ["predicted"]
    s = ctx.vocab.strings
    one = [[names[l]] + [s[top[l, t, 0]] for t in range(top.shape[1])] for l in range(L + 1)]
    ten = [[names[l]] + [join_words([s[i] for i in top[l, t]]) for t in range(top.shape[1])] for l in range(L + 1)]
    cols = ["residual"] + ctx.token_columns()
    note = ("The logit lens: each row is the residual stream entering that layer, put through the final "
            "LayerNorm and compared with every token by logit. 'predicted' is the model's output.")
    return (Table("evolution", "Token evolution", cols, one, note),
            Table("evolution_top10", "Token evolution (top 10)", cols, ten, note))


def predictions_table(ctx: Context) -> Table:
    ids, logits = ctx.trace.ids, ctx.trace.logits
    pred = np.argmax(logits, axis=-1)
    s = ctx.vocab.strings
    rows = []
    for t in range(len(ids)):
        actual = s[ids[t + 1]] if t + 1 < len(ids) else None
        correct = None if actual is None else bool(pred[t] == ids[t + 1])
        rows.append([t, "".join(ctx.tokens[: t + 1]), s[pred[t]], actual, correct])
    n_ok, n = prediction_score(ctx.trace)
    return Table("predictions", "Predictions", ["pos", "prefix", "predicted", "actual next", "correct"], rows,
                 f"Greedy next-token prediction after each prefix. It predicts {n_ok} out of {n} tokens correctly.")


def prediction_score(trace) -> tuple[int, int]:
    """(correct, total) greedy next-token predictions over the prompt: the essay's "3 out of 7"."""
    ids = trace.ids
    return int((np.argmax(trace.logits[:-1], axis=-1) == ids[1:]).sum()), len(ids) - 1


def stream_table(ctx: Context, mm: Matches, nm: NeuronMatches, pos: int) -> tuple[Table, float]:
    """Every contribution to the final residual at pos, with its direct effect on the predicted token's logit.

    Direct effect of contribution c: ((c - mean c) / std) . (lnf_w * W_E[pred]), with std the ln_f scale of
    the whole residual at pos. These effects plus b_U[pred] sum exactly to the predicted logit.
    Returns the table and max |sum of rows - resid_pre| (the decomposition error).
    """
    tr, p, cfg = ctx.trace, ctx.model.params, ctx.model.cfg
    L, H, T = tr.attn.shape[:3]
    m = cfg.d_mlp
    pos = pos % T
    d = tr.decompose(L, pos)
    error = d.max_abs_error()
    pred = int(np.argmax(tr.logits[pos]))
    scale = inv_std(tr.resid_pre[L, pos], cfg.layer_norm_eps)               # [1]: ln_f's 1/std at pos
    direction = p.lnf_w * p.W_E[pred]                                     # [D]
    centred = d.vectors - d.vectors.mean(axis=1, keepdims=True)
    effect = (centred @ direction) * scale[0]                             # [n]
    norms = np.sqrt(np.einsum("nd,nd->n", d.vectors, d.vectors))
    # words: messages reuse the message matches (attention >= 0 keeps the direction), neurons the cached
    # output meanings (negative activations read the bottom words), the rest are searched here.
    other = np.flatnonzero(~np.isin(d.kind, ("message", "neuron")))
    om = ctx.matches(*ctx.unembed_index.search(d.vectors[other], ctx.k))
    other_cell = dict(zip(other.tolist(), om.cells))
    msg_cells, pos_cells, neg_cells = mm.cells, nm.outputs.cells, nm.negatives.cells
    labels = d.labels
    rows = []
    for i, kind, l, h, src, n, w, norm, eff in zip(range(len(d)), d.kind.tolist(), d.layer_of.tolist(),
                                                    d.head.tolist(), d.source.tolist(), d.neuron.tolist(),
                                                    d.weight.tolist(), norms.tolist(), effect.tolist()):
        if kind == "message":
            words = msg_cells[(l * H + h) * T + src]
        elif kind == "neuron":
            words = "--" if w == 0 else (pos_cells if w > 0 else neg_cells)[l * m + n]
        else:
            words = other_cell[i]
        msg = kind == "message"
        rows.append([labels[i], kind, l if l >= 0 else None, h if msg else None, src if msg else None,
                     ctx.tokens[src] if msg else None, n if kind == "neuron" else None, w, norm, eff, words])
    rows.sort(key=lambda r: -abs(r[9]))
    b_U = float(p.lnf_b @ p.W_E[pred])
    note = (f"Every contribution to the residual at position {pos} ({ctx.tokens[pos]!r}) after the last layer: "
            f"{len(d)} rows that sum to it with max error {error:.2e}. Direct effect is each row's share of the "
            f"logit of the predicted token {ctx.vocab.strings[pred]!r} (the shares plus its bias b_U = {b_U:.3f} "
            f"sum to the logit {float(tr.logits[pos, pred]):.3f}). Sorted by |direct effect|.")
    table = Table("stream", "Residual stream",
                  ["component", "kind", "layer", "head", "source", "source token", "neuron", "weight", "norm",
                   "direct effect", "words"], rows, note, html_limit=200)
    return table, error
