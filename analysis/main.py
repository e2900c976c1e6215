"""The main job: analyze(model, text) -> Report (all the essay's tables), and the CLI around it."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minigpt2.errors import InputError, check_text

from . import context as cx
from . import experiments as ex
from . import tables as tb
from .knn import check_metric
from .matches import DEFAULT_BIAS_THRESHOLD
from .neurons import neuron_meanings
from .report import report_html, write_report
from .spaces import build_vocab
from .table import Table


@dataclass
class Report:
    text: str
    model_source: str
    tables: dict[str, Table]          # by name: patterns, messages, attended, neurons, bos_neurons,
                                         # evolution, evolution_top10, predictions, stream, attention,
                                         # position0, attention_on_0 (and effects, when asked)
    correct: int                         # greedy predictions that match the next token
    total: int
    decomposition_error: float           # max |sum of stream rows - resid_pre[L, pos]|
    words_dropped: int                   # tokens the BPE-fragment filter removed from every search
    word_filter: str                     # "whole words", or "valid text" for a vocabulary with too few
    tokens: list[str] = field(default_factory=list)   # [T] each token of the prompt decoded alone
    timings: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    @property
    def subtitle(self) -> str:
        return (f"model {self.model_source} · predicts {self.correct} out of {self.total} tokens · "
                f"decomposition error {self.decomposition_error:.2e} · {self.words_dropped} BPE fragments "
                "filtered from the vocabulary" + ("" if self.word_filter == "whole words" else
                                                  " (too few whole words: every token of valid text kept)"))

    def _repr_html_(self) -> str:
        """In Jupyter: the report's tabs, with ids of their own (several reports can share a notebook)."""
        import uuid
        return report_html(f"minigpt2: {self.text}", self.subtitle, list(self.tables.values()),
                           uid=f"r{uuid.uuid4().hex[:8]}-")

    def write(self, out: str | Path, force: bool = False) -> Path:
        """index.html and the CSVs into out: a new, empty or earlier-report folder (see analysis.writer)."""
        return write_report(out, f"minigpt2: {self.text}", self.subtitle, list(self.tables.values()), force=force)


def analyze(model, text: str | None = None, ids=None, k: int = 10, metric: str = "cosine",
            bias_threshold: float = DEFAULT_BIAS_THRESHOLD, position: int = -1, bos: bool = True,
            use_cache: bool = True, progress: bool = True, effects: bool = False) -> Report:
    """Run the model on text (or ids) and build every table of the essay.

    effects: also rank heads and neurons by total effect (each ablated alone; many forward passes)."""
    if (text is None) == (ids is None):
        raise InputError("give either text or ids")
    check_metric(metric)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if not (isinstance(bias_threshold, (int, float)) and math.isfinite(bias_threshold) and bias_threshold >= 0):
        raise InputError(f"bias_threshold must be a finite number >= 0, got {bias_threshold!r}")
    timings, t0 = {}, time.perf_counter()

    def lap(name):
        nonlocal t0
        now = time.perf_counter()
        timings[name] = now - t0
        t0 = now

    if ids is None:
        check_text(text)
        if not text.strip():
            raise InputError("empty prompt: give some text")
        ids = model.encode(text, bos=bos)
    trace = model.run(ids)
    if not -trace.n_tokens <= position < trace.n_tokens:
        raise InputError(f"position {position} is outside the prompt's {trace.n_tokens} tokens")
    lap("forward")
    vocab = build_vocab(model, min_words=k)
    if len(vocab.words) < k:
        raise InputError(f"only {len(vocab.words)} tokens of valid text in the vocabulary, fewer than k={k}")
    ctx = cx.Context(model, trace, vocab, model.token_strings(trace.ids), k, metric, bias_threshold,
                     use_cache=use_cache, progress=progress)
    lap("vocabulary")
    pm, mm = cx.pattern_matches(ctx), cx.message_matches(ctx)
    lap("head kNN")
    nm = cx.neuron_matches(ctx, neuron_meanings(model, vocab, k, metric, use_cache=use_cache, progress=progress))
    lap("neuron meanings")
    evolution, evolution10 = tb.evolution_tables(ctx)
    stream, error = tb.stream_table(ctx, mm, nm, position)
    out = [tb.patterns_table(ctx, pm), tb.messages_table(ctx, mm), tb.attended_table(ctx, pm, mm),
           tb.neurons_table(ctx, nm), tb.bos_neurons_table(ctx, nm), evolution, evolution10,
           tb.predictions_table(ctx), stream, tb.attention_grid_table(ctx),
           *ex.position_tables(model, trace, ctx.tokens)]
    lap("tables")
    if effects:
        out.append(ex.total_effects_table(model, trace, ctx.tokens, progress=progress))
        lap("total effects")
    correct, total = tb.prediction_score(trace)
    return Report(text=text if text is not None else model.decode(ids), model_source=model.source,
                  tables={t.name: t for t in out}, correct=correct, total=total, decomposition_error=error,
                  words_dropped=vocab.n_dropped, word_filter=vocab.filter, tokens=ctx.tokens, timings=timings)


def summary_lines(report: Report, out: Path) -> list[str]:
    """The essay's printout: the input tokens, the predicted tokens inside vertical bars, the count."""
    pred = report["predictions"]
    lines = ["Input tokens:"] + list(report.tokens) + ["", "Predicted tokens (inside the vertical bars):"]
    for prefix, p in zip(pred.column("prefix"), pred.column("predicted")):
        lines.append(f"{prefix}|{p}|")
    lines.append(f"It predicts {report.correct} out of {report.total} tokens correctly.")
    lines.append(f"Residual decomposition error: {report.decomposition_error:.2e} (max |sum of rows - residual|)")
    lines.append(f"Report: {out / 'index.html'}  (+ {len(report.tables)} CSV files in {out})")
    return lines


__all__ = ["analyze", "Report"]
