"""The main job: analyze(model, text) -> Report (all the essay's tables), and the printout the CLI shows."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minigpt2 import Edit
from minigpt2.errors import InputError, check_text
from minigpt2.forward import check_ids

from ..report.page import report_html, write_report
from ..report.table import Table
from ..search.guard import (check_flag, check_int, check_model, check_pairs, check_range, check_vector, recorded,
                            weights)
from ..search.knn import check_metric
from ..search.matches import DEFAULT_BIAS_THRESHOLD, collector_paused
from ..search.neurons import neuron_meanings
from ..search.spaces import build_vocab, clip, show_token
from . import cards as cd
from . import context as cx
from . import effects as ef
from . import experiments as ex
from . import stream as st
from . import tables as tb
from .corpus import check_store, with_corpus


@dataclass(repr=False)
class Report:
    text: str
    model_source: str
    tables: dict[str, Table]          # by name: patterns, messages, attended, neurons, bos_neurons,
                                         # evolution, evolution_top10, predictions, stream, stream_rollup,
                                         # streams, attention, position0, attention_on_0 (selected, effects:
                                         # when asked)
    correct: int                         # greedy predictions that match the next token
    total: int
    decomposition_error: float           # max |sum of stream rows - resid_pre[L, pos]|
    words_dropped: int                   # tokens the BPE-fragment filter removed from every search
    word_filter: str                     # "whole words", or "valid text" for a vocabulary with too few
    tokens: list[str] = field(default_factory=list)   # [T] each token of the prompt decoded alone
    settings: dict = field(default_factory=dict)      # model, metric, k, bias threshold, position, BOS, ...
    timings: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)   # file name -> array written beside the CSVs
    cards: object = None                 # views.cards.NeuronCards: the page's card for any neuron (None: none)
    random_weights: bool = False         # made by make-checkpoint: the page and printout say the words mean nothing

    def __getitem__(self, name: str) -> Table:
        if name not in self.tables:
            raise KeyError(f"no table {name!r}; the tables are {', '.join(self.tables)}")
        return self.tables[name]

    def __repr__(self) -> str:
        return (f"<Report {self.text[:60]!r}: {len(self.tokens)} tokens, predicts {self.correct}/{self.total}, "
                f"tables {', '.join(self.tables)}"
                + ("; RANDOM weights (make-checkpoint): the words mean nothing>" if self.random_weights else ">"))

    @property
    def subtitle(self) -> str:
        st = " · ".join(f"{k} {v}" for k, v in self.settings.items())
        return (f"predicts {self.correct} out of {self.total} tokens · decomposition error "
                f"{self.decomposition_error:.2e} · {self.words_dropped} BPE fragments filtered from the vocabulary"
                + ("" if self.word_filter == "whole words" else
                   " (too few whole words: every token of valid text kept)") + (f" · {st}" if st else ""))

    def _page_data(self, cards: bool = True) -> dict:
        on0 = self.tables.get("attention_on_0")                  # a row per layer, a column per head
        L, H = (len(on0.rows), len(on0.columns) - 1) if on0 is not None else (0, 0)
        return {"tokens": [show_token(t) for t in self.tokens], "L": L, "H": H, "cards": self.cards if cards else None}

    def _repr_html_(self) -> str:
        """In Jupyter: the report's tabs, with ids of their own (several reports can share a notebook), and its
        script (jump, filter, sorting, the head and token views); neuron cards for the listed neurons only
        (all of them would make a notebook several MB larger)."""
        import uuid
        return report_html(f"minigpt2: {self.text}", self.subtitle, list(self.tables.values()),
                           uid=f"r{uuid.uuid4().hex[:8]}-", script=True, data=self._page_data(cards=False),
                           random_weights=self.random_weights)

    def write(self, out: str | Path, force: bool = False, progress: bool = False) -> Path:
        """index.html and the CSVs into out: a new, empty or earlier-report folder (see analysis.report.writer).
        progress: a bar on stderr when writing takes over a second."""
        return write_report(out, f"minigpt2: {self.text}", self.subtitle, list(self.tables.values()), self.arrays,
                            force=force, progress=progress, data=self._page_data(),
                            random_weights=self.random_weights)


def _as_ids(model, text, ids, bos: bool):
    """(title, ids) from text or ids: a str is encoded; token ids may come as text's argument too."""
    if text is not None and ids is not None:
        raise InputError("give either text or ids, not both")
    if text is None and ids is None:
        raise InputError("give a prompt: text, or token ids")
    if text is not None and not isinstance(text, str):
        if isinstance(text, (list, tuple)) and any(isinstance(x, str) for x in text):
            raise InputError("analyze takes one prompt; for several, call it once per prompt "
                             "(or compare them: minigpt2 compare TEXT1 TEXT2)")
        ids, text = text, None
    if ids is not None:
        ids = np.asarray(ids)
        if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
            raise InputError(f"token ids must be a 1-D sequence of integers, got {ids.dtype} of shape {ids.shape}")
        ids = check_ids(ids, model.cfg)                  # in the vocabulary before they are decoded
        return "".join(model.token_strings(ids)), ids
    check_text(text)
    if not text.strip():
        raise InputError("empty prompt: give some text")
    return text, model.encode(text, bos=bos)


def analyze(model, text=None, ids=None, k: int = 10, metric: str = "cosine",
            bias_threshold: float = DEFAULT_BIAS_THRESHOLD, position: int = -1, bos: bool = True,
            use_cache: bool = True, progress: bool = True, effects: bool = False,
            heads: list[tuple[int, int]] = (), neurons: list[tuple[int, int]] = (), first_vector=None,
            corpus=None) -> Report:
    """Run the model on a prompt and build every table of the essay.

    text: the prompt (a str, encoded with BOS first unless bos=False), or token ids; ids: token ids.
    heads, neurons: (layer, head) and (layer, neuron) pairs for the "selected" tab, opened first.
    first_vector: a [d_model] vector that replaces position 0's input (W_E[<|endoftext|>] + W_pos[0]; the
        prompt must start with <|endoftext|>), e.g. tune-bos's bos.npy: the run is Edit.resid(0, 0, v).
    effects: also rank heads and neurons by total effect (each head and the 256 neurons of largest
        |attribution| ablated alone; many forward passes) beside every one's attribution (one backward pass).
    corpus: a corpus store (analysis.corpus.store.CorpusStore) of this model: its top contexts join the tables.
    """
    check_model(model)                                   # every argument first, before any work
    check_metric(metric)
    k = check_int(k, "k", 1)
    if isinstance(bias_threshold, bool) or not (isinstance(bias_threshold, (int, float, np.floating))
                                                and math.isfinite(bias_threshold) and bias_threshold >= 0):
        raise InputError(f"bias_threshold must be a finite number >= 0, got {bias_threshold!r}")
    position = check_int(position, "position")
    bos, use_cache, progress, effects = (check_flag(v, n) for v, n in ((bos, "bos"), (use_cache, "use_cache"),
                                                                        (progress, "progress"), (effects, "effects")))
    cfg = model.cfg
    heads = check_pairs(heads, "heads", "head", cfg.n_layers, cfg.n_heads)       # duplicates dropped, order kept
    neurons = check_pairs(neurons, "neurons", "neuron", cfg.n_layers, cfg.d_mlp)
    if corpus is not None:
        check_store(corpus, model)
    timings, t0 = {}, time.perf_counter()

    def lap(name):
        nonlocal t0
        now = time.perf_counter()
        timings[name] = now - t0
        t0 = now

    title, ids = _as_ids(model, text, ids, bos)
    ids = check_ids(ids, cfg)                            # empty, too long: refused before the position check
    if not -len(ids) <= position < len(ids):
        raise InputError(f"position {position} is outside the prompt's {len(ids)} tokens")
    if effects and len(ids) < 2:
        raise InputError("effects (--effects) need at least 2 tokens, a next token to predict: give a longer prompt")
    edits = []
    if first_vector is not None:
        if ids[0] != cfg.bos_token_id:
            raise InputError("first_vector replaces <|endoftext|> at position 0: the prompt must start with it "
                             "(drop --no-bos)")
        edits = [Edit.resid(0, 0, check_vector(first_vector, cfg.d_model))]
    trace = model.run(ids, edits)
    check_range(cfg.d_model, {**weights(model), **recorded(trace)})      # NumericError, not overflow, below
    lap("forward")
    vocab = build_vocab(model, min_words=k, use_cache=use_cache)
    if len(vocab.words) < k:
        raise InputError(f"only {len(vocab.words)} tokens of valid text in the vocabulary, fewer than k={k}")
    tokens = [clip(t) for t in model.token_strings(trace.ids)]           # a hostile tokenizer's, bounded
    ctx = cx.Context(model, trace, vocab, tokens, k, metric, bias_threshold, use_cache=use_cache, progress=progress)
    lap("vocabulary")
    pm, mm = cx.pattern_matches(ctx), cx.message_matches(ctx)
    lap("head kNN")
    nm = cx.neuron_matches(ctx, neuron_meanings(model, vocab, k, metric, use_cache=use_cache, progress=progress))
    lap("neuron meanings")
    error = None

    def stream_tables():
        nonlocal error
        table, rollup, error = st.stream_table(ctx, pm, mm, nm, position)
        return [table, rollup, st.streams_table(ctx)]

    steps = [lambda: [tb.patterns_table(ctx, pm), tb.messages_table(ctx, mm), tb.attended_table(ctx, pm, mm)],
             lambda: [tb.neurons_table(ctx, nm), tb.bos_neurons_table(ctx, nm)],
             lambda: [*tb.evolution_tables(ctx), tb.predictions_table(ctx)],      # the logit lens: most of the time
             stream_tables,
             lambda: [tb.attention_grid_table(ctx), *ex.position_tables(model, trace, ctx.tokens)]]
    from minigpt2.progress import tqdm
    with collector_paused():            # ~10^5 rows and cells, all kept: no garbage for the collector to find
        out = [t for step in tqdm(steps, desc="tables", unit="step", disable=not progress, leave=False, delay=1)
               for t in step()]                                                  # a bar only past a second
    if heads or neurons:
        out.insert(0, tb.selected_table(ctx, pm, mm, nm, heads, neurons))
    if corpus is not None:
        out = with_corpus(out, corpus, model)
    lap("tables")
    if effects:
        out.append(ef.total_effects_table(model, trace, ctx.tokens, progress=progress))
        lap("total effects")
    correct, total = trace.prediction_score()
    from datetime import date

    from minigpt2 import __version__
    settings = {"model": model.source, "metric": metric, "k": k, "bias threshold": bias_threshold,
                "stream position": position % trace.n_tokens,
                "BOS": ("tuned vector" if edits else "yes") if trace.ids[0] == model.cfg.bos_token_id else "no",
                "minigpt2": __version__, "date": date.today().isoformat(),
                **({"corpus": corpus.path.name} if corpus is not None else {})}
    return Report(text=title, model_source=model.source, tables={t.name: t for t in out}, correct=correct,
                  total=total, decomposition_error=error, words_dropped=vocab.n_dropped, word_filter=vocab.filter,
                  tokens=ctx.tokens, settings=settings, timings=timings, arrays=tb.neuron_arrays(ctx),
                  cards=cd.neuron_cards(ctx, nm), random_weights=getattr(cfg, "random_weights", False))


SUMMARY_LINES = 64     # a longer prompt's printout shows its first and last SUMMARY_ENDS tokens and predictions
SUMMARY_ENDS = 5


def _ends(lines: list[str], where: str) -> list[str]:
    if len(lines) <= SUMMARY_LINES:
        return lines
    n = len(lines) - 2 * SUMMARY_ENDS
    return lines[:SUMMARY_ENDS] + [f"... ({n} more: {where})"] + lines[-SUMMARY_ENDS:]


def summary_lines(report: Report, out: Path) -> list[str]:
    """The essay's printout: the input tokens, the predicted tokens inside vertical bars, the count. A long
    prompt's shows the first and last few of each, and says where the rest is."""
    pred = report["predictions"]
    lines = (["RANDOM WEIGHTS (made by make-checkpoint): the words mean nothing.", ""] if report.random_weights
             else [])
    lines += ["Input tokens:"] + _ends(list(report.tokens), "the column names of evolution.csv")
    lines += ["", "Predicted tokens (inside the vertical bars):"]
    lines += _ends([f"{prefix}|{p}|" for prefix, p in zip(pred.column("prefix"), pred.column("predicted"))],
                   "predictions.csv and the page's Predictions tab")
    lines.append(f"It predicts {report.correct} out of {report.total} tokens correctly.")
    lines.append(f"Residual decomposition error: {report.decomposition_error:.2e} (max |sum of rows - residual|)")
    if "effects" in report.tables:
        from .effects import correlation
        t = report["effects"]
        pairs = [(a, b) for a, b in zip(t.column("total effect (log-prob)"), t.column("attribution (log-prob)"))
                 if a is not None]
        lines.append(f"Total effects: attribution vs exact ablation r = {correlation(pairs):.3f} over {len(pairs)} "
                     f"components ({len(t.rows)} in effects.csv)")
    arrays = "".join(f" and {name}" for name in report.arrays)
    lines.append(f"Report: {out / 'index.html'}  (+ {len(report.tables)} CSV files{arrays} in {out})")
    return lines


__all__ = ["analyze", "Report"]
