"""minigpt2 corpus | neuron: build a corpus store on a Dask cluster, and print one neuron's card from it.

dask is imported only when `corpus` runs (analysis.corpus.engine), never by `neuron` or `analyze`.
"""
from __future__ import annotations

import os
import sys

from .args import _positive, _show


def cmd_corpus(args) -> int:
    from minigpt2 import load
    from minigpt2.hub import resolve

    from ..corpus.engine import SHARD_TOKENS, build_store
    from ..corpus.store import check_store_out

    check_store_out(args.out, args.force)          # before the model loads: a bad --out costs nothing
    source_dir = str(resolve(args.model).resolve())
    model = load(source_dir)
    model.source = args.model
    build_store(args.files, model, source_dir, args.out, seq_len=args.seq_len, top=args.top,
                workers=args.workers or os.cpu_count() or 1, scheduler=args.scheduler, force=args.force,
                shard_tokens=args.shard_tokens or SHARD_TOKENS, progress=sys.stderr.isatty(),
                say=lambda line: print(_show(line)))
    return 0


def static_words(model, layer: int, neuron: int, k: int = 10) -> dict[str, list[str]]:
    """The neuron's input, output and negative-output words (as analysis.search.neurons computes them for
    every neuron, here for one)."""
    from ..search.spaces import build_vocab, show_token

    p = model.params
    vocab = build_vocab(model, min_words=k, use_cache=True)
    in_ids, _ = vocab.ln_index(p.ln2_w[layer], p.ln2_b[layer], "cosine").search(p.W_in[layer][:, neuron][None], k)
    out_ids, _, neg_ids, _ = vocab.unembed_index(p.lnf_w, "cosine").search_both(p.W_out[layer][neuron][None], k)
    words = lambda ids: [show_token(s) for s in model.token_strings(ids[0])]  # noqa: E731
    return {"input words": words(in_ids), "output words": words(out_ids), "negative output words": words(neg_ids)}


def neuron_card(model, store, layer: int, neuron: int) -> list[str]:
    rows, stats = store.neuron(layer, neuron)
    t = store.header["tokens"]
    lines = [f"Neuron {layer}-{neuron} of {model.source}"]
    lines += [f"  {name}: {' '.join(ws)}" for name, ws in static_words(model, layer, neuron).items()]
    lines.append(f"Corpus {store.path} ({t['tokens']:,} tokens in {t['documents']:,} documents, windows of "
                 f"{store.header['settings']['seq_len']}): mean {stats['mean']:.4g}, max {stats['max']:.4g}, "
                 f"above 0 on {100 * stats['frac_active']:.1f}% of tokens")
    lines.append(f"Top {len(rows)} activations (the token between ⟦ ⟧):")
    for r in rows:
        lines.append(f"  {r['rank']:>3} {r['activation']:>9.4g}  {r['context']}   "
                     f"[{r['file']} doc {r['doc']} token {r['token_index']}]")
    return lines


def cmd_neuron(args) -> int:
    from minigpt2 import load
    from minigpt2.errors import LoadError

    from ..corpus.shard import model_fingerprint
    from ..corpus.store import CorpusStore
    from ..views.experiments import parse_neuron

    store = CorpusStore(args.corpus)
    source = args.model or store.header["model"]["source"]
    try:
        model = load(source)
    except LoadError as e:
        if args.model:
            raise
        raise LoadError(f"{store.path} was made with --model {source}, which does not load from here ({e}); "
                        "pass --model with that model's folder or hub id") from None
    layer, neuron = parse_neuron(args.neuron, model.cfg)
    store.check_model(model_fingerprint(model), source)
    print("\n".join(_show(line) for line in neuron_card(model, store, layer, neuron)))
    return 0


def load_store(path):
    """A finished corpus store, read (pyarrow only: no dask)."""
    from ..corpus.store import CorpusStore

    return CorpusStore(path)


def add_corpus_parsers(sub) -> None:
    c = sub.add_parser("corpus", help="what each neuron and head does in real text: top activations over a corpus "
                                      "(on a Dask cluster), into a store of Parquet files")
    c.add_argument("files", nargs="+", metavar="FILE", help=".txt (one document), .jsonl (a \"text\" field per "
                                                            "line) or .parquet (a text column)")
    c.add_argument("--model", default="gpt2", help="hub id or local directory (default: gpt2)")
    c.add_argument("--out", required=True, help="the store folder: new, empty, or an earlier store (resumed)")
    c.add_argument("--seq-len", type=_positive, default=64, help="tokens per window, after <|endoftext|> (default: 64)")
    c.add_argument("--top", type=_positive, default=20, help="examples kept per neuron and head (default: 20)")
    c.add_argument("--workers", type=_positive, default=None, help="local worker processes (default: the cores)")
    c.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://host:8786, instead of a local one")
    c.add_argument("--shard-tokens", type=_positive, default=None,
                   help="tokens per shard, the unit of work and of resuming (default: 262144)")
    c.add_argument("--force", action="store_true",
                   help="start afresh over a store of another model, settings or files (or write into a "
                        "non-empty folder beside its files; nothing else is touched)")
    c.set_defaults(func=cmd_corpus)

    n = sub.add_parser("neuron", help="one neuron's card: its static words and its top corpus contexts")
    n.add_argument("neuron", metavar="L-N", help="e.g. 2-666")
    n.add_argument("--corpus", required=True, metavar="STORE", help="a store made by minigpt2 corpus")
    n.add_argument("--model", default=None, help="hub id or local directory (default: the store's model)")
    n.set_defaults(func=cmd_neuron)

