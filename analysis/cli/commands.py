"""Command line: minigpt2 analyze | ablate | signature | compare | generate | make-checkpoint.

It sits above both packages: the one place that drives the model (minigpt2) and the analysis. Expected
failures (minigpt2.Error, OSError) print one line, `minigpt2: error: ...`, and exit 1; an interrupt
(Ctrl-C) exits 130 and SIGTERM 143, with nothing partial left behind; anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys


from minigpt2.errors import Error, InputError

from ..search.matches import DEFAULT_BIAS_THRESHOLD
from .args import RANDOM_NOTE, _nonneg, _positive, _prompt, _show, _threshold, load_model, printable
from .corpus import add_corpus_parsers, load_store
from .experiments import add_experiment_parsers
from .grad import add_grad_parsers, first_vector_arg, load_first_vector


def cmd_generate(args) -> int:
    prompt = _prompt(args.prompt)
    model = load_model(args)
    ids = model.encode(prompt, bos=not args.no_bos)
    out = model.generate(ids, args.n)
    start = 1 if not args.no_bos else 0
    print("\n".join(printable(line) for line in model.decode(out[start:]).split("\n")))   # lines stay lines
    made = len(out) - len(ids)
    if made < args.n:
        print(f"minigpt2: note: stopped after {made} of {args.n} new tokens: the model's context holds "
              f"{model.cfg.n_ctx} tokens", file=sys.stderr)
    return 0


def cmd_make_checkpoint(args) -> int:
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import KNOWN_CONFIGS

    out = make_checkpoint(KNOWN_CONFIGS[args.like], args.out, seed=args.seed, progress=sys.stderr.isatty(),
                          force=args.force)
    print(f"wrote random {args.like}-shaped weights to {printable(str(out))} "
          "(for offline use: the words they produce mean nothing)")
    return 0


def _listed(values: list[str]) -> list[str]:
    """--heads 0-1,5-10 --heads 2-3 -> ["0-1", "5-10", "2-3"]."""
    return [x for v in values for x in v.split(",") if x.strip()]


def cmd_analyze(args) -> int:
    from ..report.writer import check_out
    from ..views.experiments import parse_head, parse_neuron
    from ..views.main import analyze, summary_lines

    text = _prompt(args.text)
    check_out(args.out, force=args.force)          # before any computation: a bad --out costs nothing
    corpus = load_store(args.corpus) if args.corpus else None
    model = load_model(args)
    heads = []
    for h in _listed(args.heads):
        l, h_, src = parse_head(h, model.cfg)
        if src is not None:
            raise InputError(f"--heads takes LAYER-HEAD (e.g. 0-1), got {h!r}")
        heads.append((l, h_))
    neurons = [parse_neuron(n, model.cfg) for n in _listed(args.neurons)]
    first = None if args.first_vector is None else load_first_vector(args.first_vector, model.cfg.d_model)
    report = analyze(model, text, k=args.k, metric=args.metric, bias_threshold=args.bias_threshold,
                     position=args.position, bos=not args.no_bos, use_cache=not args.no_cache,
                     progress=True, effects=args.effects, heads=heads, neurons=neurons,   # bars where watched
                     first_vector=first, corpus=corpus)
    out = report.write(args.out, force=args.force, progress=True)
    print("\n".join(_show(line) for line in summary_lines(report, out)))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line like every other error (exit status 2, as for any usage error),
    and every number is a value, not an option: --scale -1e3, --scale -inf (argparse's own rule knows only
    -5 and -0.5)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-(inf|infinity|nan)$", re.I)

    def error(self, message: str):
        message = printable(" ".join(message.split()))
        self.exit(2, f"minigpt2: error: {self.prog.removeprefix('minigpt2 ')}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from minigpt2.config import KNOWN_CONFIGS

    parser = _Parser(prog="minigpt2", description="A NumPy GPT-2 that shows its patterns and messages.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    a = sub.add_parser("analyze", help="vocabulary analysis of a prompt: HTML report + CSV tables",
                       epilog='example: minigpt2 analyze "<|endoftext|> The baseball player hit a home run" '
                              "--heads 5-10 --neurons 2-666")
    a.add_argument("text", help="the prompt, e.g. \"<|endoftext|> The baseball player hit a home run\" (the essay's "
                                "tokens: <|endoftext|> once, then ' The' with its space)")
    a.add_argument("--model", default="gpt2", help="hub id or local directory (default: gpt2)")
    a.add_argument("--out", default="minigpt2-report",
                   help="report folder: new, empty, or an earlier report (default: ./minigpt2-report)")
    a.add_argument("--force", action="store_true",
                   help="write the report's files into a non-empty folder that holds no report (replacing "
                        "same-named files; nothing else is touched)")
    a.add_argument("-k", type=_positive, default=10, help="words per vector (default: 10)")
    a.add_argument("--metric", choices=("cosine", "dot"), default="cosine", help="similarity (default: cosine)")
    a.add_argument("--bias-threshold", type=_threshold, default=DEFAULT_BIAS_THRESHOLD,
                   help="show '(high bias)' when the matches' mean token bias is more than this many standard "
                        f"deviations from the vocabulary's mean (default: {DEFAULT_BIAS_THRESHOLD})")
    a.add_argument("--position", type=int, default=-1, help="token whose residual the stream tab breaks down (default: last)")
    a.add_argument("--no-bos", action="store_true", help="do not prepend <|endoftext|>")
    a.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the disk cache (neuron meanings, projected head vocabularies)")
    a.add_argument("--heads", action="append", default=[], metavar="L-H[,L-H...]",
                   help="heads for the 'selected' tab (opened first) and selected.csv, e.g. 0-0,5-10")
    a.add_argument("--neurons", action="append", default=[], metavar="L-N[,L-N...]",
                   help="neurons for the 'selected' tab and selected.csv, e.g. 2-666,2-1825")
    a.add_argument("--effects", action="store_true",
                   help="add the total-effects tab: every head and neuron's attribution (one backward pass), and the "
                        "exact effect of ablating every head and the 256 neurons of largest |attribution|")
    first_vector_arg(a)
    a.add_argument("--corpus", metavar="STORE", help="a corpus store of this model (minigpt2 corpus): each neuron's "
                   "and head's top contexts in real text join the tables")
    a.set_defaults(func=cmd_analyze)

    add_experiment_parsers(sub)
    add_grad_parsers(sub)
    add_corpus_parsers(sub)

    g = sub.add_parser("generate", help="greedy text generation")
    g.add_argument("prompt")
    g.add_argument("-n", type=_nonneg, default=20, help="tokens to generate (default: 20)")
    g.add_argument("--model", default="gpt2", help="hub id or local directory (default: gpt2)")
    g.add_argument("--no-bos", action="store_true", help="do not prepend <|endoftext|>")
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("make-checkpoint", help="random weights of a real GPT-2 config, in the hub's file layout")
    c.add_argument("--like", choices=sorted(KNOWN_CONFIGS), default="gpt2", help="which config (default: gpt2)")
    c.add_argument("--out", required=True, help="folder to write (new or empty)")
    c.add_argument("--seed", type=_nonneg, default=0, help="random seed, an integer >= 0 (default: 0)")
    c.add_argument("--force", action="store_true",
                   help="write into a non-empty folder (replacing only the checkpoint's own file names)")
    c.set_defaults(func=cmd_make_checkpoint)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every cleanup runs (as for Ctrl-C)."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _one_line(e: BaseException) -> str:
    """The error as one terminal line, its control characters escaped (a file name or prompt may hold ESC)."""
    if isinstance(e, OSError) and not isinstance(e, Error) and e.strerror:
        text = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    else:
        text = str(e)
    return printable(" ".join(text.split())) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rc = args.func(args)
        if getattr(args, "random_weights", False):
            print(RANDOM_NOTE, file=sys.stderr)
        return rc
    except KeyboardInterrupt:
        print("minigpt2: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:            # e.g. `minigpt2 ablate ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Terminated:
        print("minigpt2: terminated", file=sys.stderr)
        return 143
    except (Error, OSError) as e:   # expected failures: one line. Anything else is a bug: a traceback.
        print(f"minigpt2: error: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)

