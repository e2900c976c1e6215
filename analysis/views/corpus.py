"""A corpus store in the report (analyze --corpus STORE): each neuron's top corpus contexts and statistics as
columns of the neuron tables, beside its static words, and each head's top corpus events in a table of its own.

Nothing here runs without --corpus, and nothing imports dask: the store is read with pyarrow alone.
"""
from __future__ import annotations

from dataclasses import replace

from ..corpus.shard import model_fingerprint
from ..report.table import Table

SHOWN = 3                       # top contexts per neuron or head in the report (the store keeps --top)
NEURON_COLUMNS = [f"corpus #{i}" for i in range(1, SHOWN + 1)] + ["corpus max", "corpus mean", "corpus active"]


def check_store(store, model) -> None:
    """OutputError unless the store was made with this model's weights, config and tokenizer."""
    store.check_model(model_fingerprint(model), model.source)


def _top(table, key: str) -> dict[tuple[int, int], list[str]]:
    """(layer, neuron or head) -> its first SHOWN examples as 'context (value)', by rank."""
    import pyarrow.compute as pc

    t = table.filter(pc.less_equal(table["rank"], SHOWN)).sort_by([("layer", "ascending"), (key, "ascending"),
                                                                   ("rank", "ascending")])
    value = "activation" if key == "neuron" else "attention"
    out: dict[tuple[int, int], list[str]] = {}
    for l, i, ctx, v in zip(*(t[c].to_pylist() for c in ("layer", key, "context", value))):
        out.setdefault((l, i), []).append(f"{ctx} ({v:.3g})")
    return out


def _insert(table: Table, after: str, names: list[str], cells) -> Table:
    """table with columns names after the column after; cells(row) gives a row's new cells."""
    at = table.columns.index(after) + 1
    return replace(table, columns=table.columns[:at] + names + table.columns[at:],
                   rows=[r[:at] + cells(r) + r[at:] for r in table.rows],
                   note=table.note + " Corpus columns: the top contexts of the corpus store (the token in ⟦ ⟧, "
                                     "its activation), and the activation's max, mean and share of tokens above 0 "
                                     "there.")


def neuron_columns(tables: list[Table], store) -> list[Table]:
    """The neurons and BOS-neurons tables with NEURON_COLUMNS after their output words."""
    top = _top(store.neurons, "neuron")
    s = store.neuron_stats
    stats = {(l, n): [mx, mean, act] for l, n, mx, mean, act in zip(
        *(s[c].to_pylist() for c in ("layer", "neuron", "max", "mean", "frac_active")))}

    def cells(table):
        li, ni = table.columns.index("layer"), table.columns.index("neuron")
        return lambda r: ((top.get((r[li], r[ni]), []) + [""] * SHOWN)[:SHOWN]
                          + stats.get((r[li], r[ni]), [None] * 3))

    return [_insert(t, "output words", NEURON_COLUMNS, cells(t)) if t.name in ("neurons", "bos_neurons") else t
            for t in tables]


def heads_table(store, n_layers: int, n_heads: int) -> Table:
    """corpus_heads: each head's top attention weights to a source other than position 0 over the corpus (the
    source between ⟨ ⟩, the destination between ⟦ ⟧), and its mean attention on position 0 there."""
    import pyarrow.compute as pc

    top = _top(store.heads, "head")
    h = store.heads.filter(pc.equal(store.heads["rank"], 1))
    on0 = {(l, i): v for l, i, v in zip(*(h[c].to_pylist() for c in ("layer", "head", "attention_on_0")))}
    rows = [[l, i, on0.get((l, i))] + (top.get((l, i), []) + [""] * SHOWN)[:SHOWN]
            for l in range(n_layers) for i in range(n_heads)]
    t = store.header["tokens"]
    return Table("corpus_heads", "Heads in the corpus",
                 ["layer", "head", "corpus attention on 0"] + [f"corpus #{i}" for i in range(1, SHOWN + 1)], rows,
                 f"Each head's strongest attention to a source other than position 0 (from queries with a choice: at "
                 f"window position 2 or later) over the corpus in "
                 f"{store.path.name}/ ({t['tokens']:,} tokens in {t['documents']:,} documents): the source "
                 "between ⟨ ⟩, the destination between ⟦ ⟧, the weight in brackets; and its mean attention on position 0 "
                 "there. Read them beside the head's patterns and messages.")


def with_corpus(tables: list[Table], store, model) -> list[Table]:
    return neuron_columns(tables, store) + [heads_table(store, model.cfg.n_layers, model.cfg.n_heads)]
