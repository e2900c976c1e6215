"""The main job: analyze(model, text) -> Report (all the essay's tables), and the CLI around it."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import tables as tb
from .cache import neuron_meanings
from .matches import DEFAULT_BIAS_THRESHOLD
from .report import report_html, write_report
from .spaces import build_vocab


@dataclass
class Report:
    text: str
    model_source: str
    tables: dict[str, tb.Table]          # by name: patterns, messages, attended, neurons, bos_neurons,
                                         # evolution, evolution_top10, predictions, stream
    correct: int                         # greedy predictions that match the next token
    total: int
    decomposition_error: float           # max |sum of stream rows - resid_pre[L, pos]|
    words_dropped: int                   # tokens the BPE-fragment filter removed from every search
    word_filter: str                     # "whole words", or "valid text" for a vocabulary with too few
    timings: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, name: str) -> tb.Table:
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

    def write(self, out: str | Path) -> Path:
        return write_report(out, f"minigpt2: {self.text}", self.subtitle, list(self.tables.values()))


def analyze(model, text: str | None = None, ids=None, k: int = 10, metric: str = "cosine",
            bias_threshold: float = DEFAULT_BIAS_THRESHOLD, position: int = -1, bos: bool = True,
            use_cache: bool = True, progress: bool = True) -> Report:
    """Run the model on text (or ids) and build every table of the essay."""
    if (text is None) == (ids is None):
        raise ValueError("give either text or ids")
    if metric not in ("cosine", "dot"):
        raise ValueError(f"metric must be 'cosine' or 'dot', got {metric!r}")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    timings, t0 = {}, time.perf_counter()

    def lap(name):
        nonlocal t0
        now = time.perf_counter()
        timings[name] = now - t0
        t0 = now

    if ids is None:
        if not text.strip():
            raise ValueError("empty prompt")
        ids = model.encode(text, bos=bos)
    trace = model.run(ids)
    if not -trace.n_tokens <= position < trace.n_tokens:
        raise ValueError(f"position {position} is outside the prompt's {trace.n_tokens} tokens")
    lap("forward")
    vocab = build_vocab(model, min_words=k)
    if len(vocab.words) < k:
        raise ValueError(f"only {len(vocab.words)} tokens of valid text in the vocabulary, fewer than k={k}")
    ctx = tb.Context(model, trace, vocab, model.token_strings(trace.ids), k, metric, bias_threshold,
                     use_cache=use_cache, progress=progress)
    lap("vocabulary")
    pm, mm = tb.pattern_matches(ctx), tb.message_matches(ctx)
    lap("head kNN")
    nm = tb.neuron_matches(ctx, neuron_meanings(model, vocab, k, metric, use_cache=use_cache, progress=progress))
    lap("neuron meanings")
    evolution, evolution10 = tb.evolution_tables(ctx)
    stream, error = tb.stream_table(ctx, mm, nm, position)
    out = [tb.patterns_table(ctx, pm), tb.messages_table(ctx, mm), tb.attended_table(ctx, pm, mm),
           tb.neurons_table(ctx, nm), tb.bos_neurons_table(ctx, nm), evolution, evolution10,
           tb.predictions_table(ctx), stream]
    lap("tables")
    correct, total = tb.prediction_score(trace)
    return Report(text=text if text is not None else model.decode(ids), model_source=model.source,
                  tables={t.name: t for t in out}, correct=correct, total=total, decomposition_error=error,
                  words_dropped=vocab.n_dropped, word_filter=vocab.filter, timings=timings)


def summary_lines(report: Report, out: Path) -> list[str]:
    pred = report["predictions"]
    lines = ["Predicted tokens (inside the vertical bars):"]
    for prefix, p in zip(pred.column("prefix"), pred.column("predicted")):
        lines.append(f"  {prefix}|{p}|")
    lines.append(f"It predicts {report.correct} out of {report.total} tokens correctly.")
    lines.append(f"Residual decomposition error: {report.decomposition_error:.2e} (max |sum of rows - residual|)")
    lines.append(f"Report: {out / 'index.html'}  (+ {len(report.tables)} CSV files in {out})")
    return lines


def analyze_cli(args) -> int:
    from minigpt2.model import load

    if not args.text.strip():
        raise ValueError("empty prompt")
    model = load(args.model)
    threshold = DEFAULT_BIAS_THRESHOLD if args.bias_threshold is None else args.bias_threshold
    report = analyze(model, args.text, k=args.k, metric=args.metric, bias_threshold=threshold,
                     position=args.position, bos=not args.no_bos, use_cache=not args.no_cache,
                     progress=sys.stderr.isatty())
    out = report.write(args.out)
    print("\n".join(summary_lines(report, out)))
    return 0


__all__ = ["analyze", "Report"]
