"""The table builders: one function per table of the essay, each returning a Table of plain rows.

They read the Context and the Matches that context.py found; nothing here searches the vocabulary or
lays out the page (analysis.report.layout does, by table name). A column of words has its Scored values
(the words with their scores) in a column beside it, e.g. "words (scores)". The residual-stream tables
are in stream.py.
"""
from __future__ import annotations

from operator import itemgetter

import numpy as np

from ..report.layout import TOKEN_COLUMNS, scores_column
from ..report.table import Table
from ..search.matches import Matches
from ..search.spaces import show_token
from .context import Context, NeuronMatches, logit_lens_top


def _head_table(ctx: Context, m: Matches, name: str, title: str, note: str) -> Table:
    L, H, T = m.shape
    tok, strings = [show_token(s) for s in ctx.tokens], ctx.vocab.clipped
    cells, bias = m.cells.tolist(), np.round(m.bias_z.astype(np.float64), 3).tolist()
    raw = [",".join(itemgetter(*row)(strings)) if len(row) > 1 else strings[row[0]]    # itemgetter: a C loop
           for row in m.ids.reshape(-1, m.ids.shape[-1]).tolist()]
    scored = m.scored.reshape(-1).tolist()
    rows = [[l, h, t, tok[t], cells[l][h][t], bias[l][h][t], raw[(l * H + h) * T + t], scored[(l * H + h) * T + t]]
            for l in range(L) for h in range(H) for t in range(T)]
    if T > TOKEN_COLUMNS:
        note += (f" This prompt is long: the page shows the first {TOKEN_COLUMNS} tokens; {name}.csv has all "
                 f"{T}.")
    return Table(name, title, ["layer", "head", "pos", "token", "words", "bias_z", "matches",
                               scores_column("words")], rows, note)


def patterns_table(ctx: Context, pm: Matches) -> Table:
    return _head_table(ctx, pm, "patterns", "Patterns",
                       "The pattern each token (column) leaves behind at each head (row), compared with LN1 of "
                       "that layer applied to the vocabulary: later tokens attend to it when they resemble these "
                       "words. Hover a cell for the scores; '(high bias)' hides matches that are all very frequent "
                       "or very rare tokens.")


def messages_table(ctx: Context, mm: Matches) -> Table:
    return _head_table(ctx, mm, "messages", "Messages",
                       "The message each token (column) leaves behind at each head (row), x~ W_V W_O, compared "
                       "with the vocabulary as the final LayerNorm reads it (ln_f gain x W_E): what a token that "
                       "attends here picks up. Hover a cell for the scores.")


# The format follows the size. Long prompts keep every value somewhere, but not as one cell each (the page's
# limits, such as TOKEN_COLUMNS, are in analysis.report.layout):
ATTENDED_CELLS = 2_000_000      # attended.csv: whole heads up to this many attention cells
GRID_TOKENS = 24                # the attention and position grids: the first tokens of each head
PREFIX_CHARS = 80               # long prompts: predictions show the end of each prefix


def attended_table(ctx: Context, pm: Matches, mm: Matches) -> Table:
    """Per head and source token: its pattern words, its message words, and the attention each query gave it.

    Heads come most interesting first: least attention parked on position 0 (the essay's "no-op" heads
    attend there). Each head is T rows of T attention columns, so a long prompt keeps whole heads up to
    ATTENDED_CELLS cells (the note says how many); trace.attn always has all of them.
    """
    tr = ctx.trace
    L, H, T = tr.attn.shape[:3]
    order = np.argsort(tr.attention_on_0().reshape(-1), kind="stable").tolist()   # least parked first
    n_heads = max(1, min(L * H, ATTENDED_CELLS // (T * T)))
    rows = []
    for flat in order[:n_heads]:
        l, h = divmod(flat, H)
        got_mean, got_max = received(tr.attn[l, h])
        a = tr.attn[l, h].T.tolist()                                      # [source][query]
        for s_ in range(T):
            rows.append([l, h, s_, show_token(ctx.tokens[s_]), pm.cell(l, h, s_), mm.cell(l, h, s_), got_mean[s_],
                         got_max[s_]] + [None] * s_ + a[s_][s_:] + [pm.scored[l, h, s_], mm.scored[l, h, s_]])
    kept = "" if n_heads == L * H else (f" This prompt is long: the CSV keeps the {n_heads} of {L * H} heads that "
                                        "attend least to position 0 (Trace.attn has them all).")
    base = ["layer", "head", "source", "token", "pattern", "message", "mean attention received", "max attention"]
    wide = T <= TOKEN_COLUMNS
    if not wide:
        kept += (f" The page shows the first {max(1, 1000 // T)} whole heads, without the {T} per-query columns "
                 "(attended.csv has them).")
    return Table("attended", "Attended messages",
                 base + ctx.token_columns() + [scores_column("pattern"), scores_column("message")], rows,
                 "Each row is a context token at one head: its pattern (what finds it), its message (what it "
                 "passes on), and the attention the later tokens gave it, per query on the right: which "
                 "patterns were matched, which messages picked up. Heads are ordered by how little attention "
                 "they park on position 0, most interesting first." + kept)


def received(attn: np.ndarray) -> tuple[list, list]:
    """The mean and the max attention each source s received from the queries after it, q > s (as the
    position-0 tab counts: a token's attention to itself, 1 at position 0, is not attention received), from
    one head's attn [T, T]; None for the last source, which no query follows."""
    T = attn.shape[0]
    later = np.tril(np.ones((T, T), bool), -1)                            # [query, source]: q > s
    got = np.where(later, attn, 0).sum(axis=0)                            # [T] over the later queries
    n = np.arange(T - 1, -1, -1)                                          # how many queries follow s
    top = np.where(later, attn, -np.inf).max(axis=0)
    return ([float(g / k) if k else None for g, k in zip(got.tolist(), n.tolist())],
            [float(x) if k else None for x, k in zip(top.tolist(), n.tolist())])


def attention_grid_table(ctx: Context) -> Table:
    """Every head's attention as a small heat map (query rows x key columns), the essay's per-head view.

    Every head, in layer and head order, cut to its first GRID_TOKENS tokens (Trace.attn has them all)."""
    tr = ctx.trace
    L, H, T = tr.attn.shape[:3]
    W = min(T, GRID_TOKENS)
    cols = ctx.token_columns()[:W]
    rows = []
    for l in range(L):
        for h in range(H):
            a = tr.attn[l, h, :W, :W].tolist()                            # [query][key]
            rows += [[l, h, cols[t]] + a[t][: t + 1] + [None] * (W - 1 - t) for t in range(W)]
    kept = "" if W == T else (f" This prompt is long: each head's first {W} tokens (Trace.attn has them all; "
                              "attended.csv, every query of its heads).")
    return Table("attention", "Attention", ["layer", "head", "query"] + cols, rows,
                 "Each head's attention: rows are queries, columns the keys they attend to (white 0, green 0.5, "
                 "red 1)." + kept)


# -- neurons ------------------------------------------------------------------------------------
def neurons_table(ctx: Context, nm: NeuronMatches) -> Table:
    """Every neuron: static input/output words, and this prompt's activation at each token.

    Sorted by effect = max over tokens of |activation| x ||W_out row||, largest first.
    """
    acts = ctx.trace.mlp_acts                                             # [L, T, m]
    L, T, m = acts.shape
    W_out = ctx.model.params.W_out
    out_norm = np.sqrt(np.einsum("lmd,lmd->lm", W_out, W_out))            # [L, m]
    hi, lo = acts.max(axis=1), acts.min(axis=1)                           # [L, m]: no [L, T, m] temporary
    effect = np.maximum(hi, -lo) * out_norm                               # max |activation| x ||W_out||
    cin, cout = nm.inputs.cells.tolist(), nm.outputs.cells.tolist()       # [L][m]
    sin, sout = nm.inputs.scored.tolist(), nm.outputs.scored.tolist()     # [L][m]
    wide = T <= TOKEN_COLUMNS
    up = hi >= -lo                                                        # the largest |activation| is positive
    arg = lambda f: np.stack([f(a, axis=0) for a in acts])  # noqa: E731  per layer: no [L, m, T] copy
    peak = np.where(up, arg(np.argmax), arg(np.argmin)).tolist()          # [L, m] its token
    peak_act = np.where(up, hi, lo).tolist()
    acts_ln = acts.transpose(0, 2, 1).tolist() if wide else None          # [L][m][T]
    eff = effect.tolist()
    tok = [show_token(t) for t in ctx.tokens]
    rows = []
    for l, n in zip(*np.unravel_index(np.argsort(-effect.reshape(-1), kind="stable"), (L, m))):
        l, n = int(l), int(n)
        rows.append([l, n, cin[l][n], cout[l][n], eff[l][n], peak_act[l][n], f"{peak[l][n]}:{tok[peak[l][n]]}"]
                    + (acts_ln[l][n] if wide else []) + [sin[l][n], sout[l][n]])
    where = ("Activations per token on the right; exact zeros show as --." if wide else
             f"This prompt is long: the {T} activations of each neuron are in mlp_acts.npy ([L, T, m], float32, "
             "as Trace.mlp_acts), not in this table.")
    return Table("neurons", "FFN neurons",
                 ["layer", "neuron", "input words", "output words", "effect", "peak activation", "at"]
                 + (ctx.token_columns() if wide else [])
                 + [scores_column("input words"), scores_column("output words")], rows,
                 "Input words: what the neuron looks for (W_in column vs LN2 of the vocabulary). Output words: "
                 "what it writes (W_out row vs ln_f gain x W_E). These never change with the prompt. Sorted by "
                 "effect = max |activation| x ||W_out||; the peak is the activation of largest size and its "
                 "token. " + where)


def neuron_arrays(ctx: Context) -> dict[str, np.ndarray]:
    """Files written beside neurons.csv: a long prompt's activations ([L, T, m], as Trace.mlp_acts), for which
    the neurons table has no columns."""
    return {} if ctx.trace.n_tokens <= TOKEN_COLUMNS else {"mlp_acts.npy": ctx.trace.mlp_acts}


BOS_RATIO = 0.25   # a BOS neuron fires at position 0 at least 1 / BOS_RATIO times as strongly as anywhere else


def bos_neurons(acts: np.ndarray) -> list[tuple[int, int]]:
    """The BOS neurons of activations acts [L, T, m]: positive at position 0 and at least 1 / BOS_RATIO times
    their largest |activation| anywhere else (like the essay's 2-666), as (layer, neuron), strongest first
    (ties to the lower layer, then neuron)."""
    first = acts[:, 0, :]                                                 # [L, m]
    chosen = np.argwhere((first > 0) & (_elsewhere(acts) <= BOS_RATIO * first)).tolist()
    return sorted(map(tuple, chosen), key=lambda ln: -first[ln[0], ln[1]])


def _elsewhere(acts: np.ndarray) -> np.ndarray:
    """[L, m] max |activation| after position 0 (0 for a one-token prompt), no [L, T, m] temporary."""
    if acts.shape[1] == 1:
        return np.zeros_like(acts[:, 0, :])
    return np.maximum(acts[:, 1:].max(axis=1), -acts[:, 1:].min(axis=1))


def bos_neurons_table(ctx: Context, nm: NeuronMatches, limit: int = 40) -> Table:
    """Neurons that fire strongly at position 0 and weakly everywhere else (like the essay's 2-666)."""
    acts = ctx.trace.mlp_acts                                             # [L, T, m]
    first, rest = acts[:, 0, :], _elsewhere(acts)
    chosen = bos_neurons(acts)[:limit]
    rows = [[l, n, float(first[l, n]), float(rest[l, n]), nm.outputs.cell(l, n), nm.inputs.cell(l, n)]
            + [float(a) for a in acts[l, :, n]] + [nm.outputs.scored[l, n], nm.inputs.scored[l, n]]
            for l, n in chosen]
    none = "" if rows else " None of this prompt's neurons qualifies."
    return Table("bos_neurons", "BOS neurons",
                 ["layer", "neuron", "activation at 0", "max |activation| elsewhere", "output words",
                  "input words"] + ctx.token_columns() + [scores_column("output words"), scores_column("input words")],
                 rows,
                 f"Neurons whose activation at position 0 ({ctx.tokens[0]!r}) is positive and at least "
                 f"{1 / BOS_RATIO:g}x their "
                 "largest activation anywhere else, strongest first. Position 0 sees no context, so these "
                 "contributions are the same for every prompt that starts with this token." + none)


# -- residual stream ----------------------------------------------------------------------------

def evolution_tables(ctx: Context) -> tuple[Table, Table]:
    top = logit_lens_top(ctx, 10)                                         # [L+1, T, 10]
    L = top.shape[0] - 1
    names = [f"layer {l}" for l in range(L)] + ["predicted"]
    label = {i: ctx.label(i) for i in np.unique(top).tolist()}            # each token once, not per cell
    ids = top.tolist()
    one = [[names[l]] + [label[row[0]] for row in ids[l]] for l in range(L + 1)]
    ten = [[names[l]] + [", ".join(map(label.__getitem__, row)) for row in ids[l]] for l in range(L + 1)]
    cols = ["residual"] + ctx.token_columns()
    note = ("The logit lens: each row is the residual stream entering that layer (columns: its token), put "
            "through the final LayerNorm and compared with every token by logit; 'predicted' is the model's "
            "output. Read down a column to watch a token turn into its prediction. Every token is ranked, "
            "fragments too: · is a leading space, [brackets] mark a BPE fragment (no whole word), <e2 80> the "
            "bytes of a byte fragment.")
    if len(cols) - 1 > TOKEN_COLUMNS:
        note += f" This prompt is long: the page shows the first {TOKEN_COLUMNS} tokens; the CSVs have all."
    return (Table("evolution", "Token evolution", cols, one, note),
            Table("evolution_top10", "Token evolution (top 10)", cols, ten, note))


def predictions_table(ctx: Context) -> Table:
    ids = ctx.trace.ids
    pred = ctx.trace.predicted
    s = ctx.vocab.clipped
    rows = []
    for t in range(len(ids)):
        actual = s[ids[t + 1]] if t + 1 < len(ids) else None
        correct = None if actual is None else bool(pred[t] == ids[t + 1])
        prefix = "".join(ctx.tokens[max(0, t + 1 - 40): t + 1])             # enough for PREFIX_CHARS
        if len(ids) > TOKEN_COLUMNS and (t >= 40 or len(prefix) > PREFIX_CHARS):
            prefix = "…" + prefix[-PREFIX_CHARS:]
        elif t >= 40:
            prefix = "".join(ctx.tokens[: t + 1])
        rows.append([t, prefix, s[pred[t]], actual, correct])
    n_ok, n = ctx.trace.prediction_score()
    long = (f" This prompt is long: each prefix shows its last {PREFIX_CHARS} characters."
            if len(ids) > TOKEN_COLUMNS else "")
    return Table("predictions", "Predictions", ["pos", "prefix", "predicted", "actual next", "correct"], rows,
                 f"Greedy next-token prediction after each prefix (green: it is the actual next token). It "
                 f"predicts {n_ok} out of {n} tokens correctly." + long)


def selected_table(ctx: Context, pm: Matches, mm: Matches, nm: NeuronMatches,
                   heads: list[tuple[int, int]], neurons: list[tuple[int, int]]) -> Table:
    """The heads and neurons asked for with --heads / --neurons, as the essay's figures show them: per head
    and token its pattern words, message words and the attention it received; per neuron its input and
    output words and its activation at each token."""
    tr = ctx.trace
    T = tr.n_tokens
    rows = []
    for l, h in heads:
        got = received(tr.attn[l, h])[0]                                      # from the queries after s
        for s_ in range(T):
            rows.append([l, h, None, s_, show_token(ctx.tokens[s_]), pm.cell(l, h, s_), mm.cell(l, h, s_),
                         got[s_], None, None] + [None] * s_ + tr.attn[l, h, s_:, s_].tolist()
                        + [pm.scored[l, h, s_], mm.scored[l, h, s_], None, None])
    for l, n in neurons:
        rows.append([l, None, n, None, None, None, None, None, nm.inputs.cell(l, n), nm.outputs.cell(l, n)]
                    + tr.mlp_acts[l, :, n].tolist() + [None, None, nm.inputs.scored[l, n], nm.outputs.scored[l, n]])
    words = ["pattern words", "message words", "input words", "output words"]

    return Table("selected", "Selected", ["layer", "head", "neuron", "pos", "token", "pattern words",
                                          "message words", "attention received", "input words", "output words"]
                 + ctx.token_columns() + [scores_column(c) for c in words], rows,
                 "The heads and neurons you selected (--heads, --neurons). A head has one row per token: the "
                 "pattern the token leaves behind, its message, the mean attention the later tokens paid it, and "
                 "on the right the attention each query (column) gave it. A neuron has its input words (what it "
                 "looks for), its output words (what it writes) and on the right its activation at each token.")
