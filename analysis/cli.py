"""Command line: minigpt2 analyze | generate | make-checkpoint.

It sits above both packages: the one place that drives the model (minigpt2) and the analysis. Expected
failures (minigpt2.Error, OSError) print one line, `minigpt2: error: ...`, and exit 1; an interrupt
(Ctrl-C) exits 130 and SIGTERM 143, with nothing partial left behind; anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path

from minigpt2.errors import Error, InputError, check_text

from .matches import DEFAULT_BIAS_THRESHOLD


def _positive(text: str) -> int:
    n = int(text)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {n}")
    return n


def _nonneg(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def _threshold(text: str) -> float:
    x = float(text)
    if not math.isfinite(x) or x < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return x


def _prompt(text: str) -> str:
    check_text(text)
    if not text.strip():
        raise InputError("empty prompt: give some text")
    return text


def cmd_generate(args) -> int:
    from minigpt2 import load

    prompt = _prompt(args.prompt)
    model = load(args.model)
    ids = model.encode(prompt, bos=not args.no_bos)
    out = model.generate(ids, args.n)
    start = 1 if not args.no_bos else 0
    print(model.decode(out[start:]))
    made = len(out) - len(ids)
    if made < args.n:
        print(f"minigpt2: note: stopped after {made} of {args.n} new tokens: the model's context holds "
              f"{model.cfg.n_ctx} tokens", file=sys.stderr)
    return 0


def cmd_make_checkpoint(args) -> int:
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import KNOWN_CONFIGS

    out = Path(args.out)
    make_checkpoint(KNOWN_CONFIGS[args.like], out, seed=args.seed, progress=sys.stderr.isatty(), force=args.force)
    print(f"wrote random {args.like}-shaped weights to {out} (for offline use: the words they produce mean nothing)")
    return 0


def cmd_analyze(args) -> int:
    from minigpt2 import load

    from .main import analyze, summary_lines
    from .writer import check_out

    text = _prompt(args.text)
    check_out(args.out, force=args.force)          # before any computation: a bad --out costs nothing
    model = load(args.model)
    report = analyze(model, text, k=args.k, metric=args.metric, bias_threshold=args.bias_threshold,
                     position=args.position, bos=not args.no_bos, use_cache=not args.no_cache,
                     progress=sys.stderr.isatty())
    out = report.write(args.out, force=args.force)
    print("\n".join(summary_lines(report, out)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from minigpt2.config import KNOWN_CONFIGS

    parser = argparse.ArgumentParser(prog="minigpt2", description="A NumPy GPT-2 that shows its patterns and messages.")
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="vocabulary analysis of a prompt: HTML report + CSV tables")
    a.add_argument("text", help="the prompt, e.g. 'The baseball player hit a home run'")
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
    a.set_defaults(func=cmd_analyze)

    g = sub.add_parser("generate", help="greedy text generation")
    g.add_argument("prompt")
    g.add_argument("-n", type=_nonneg, default=20, help="tokens to generate (default: 20)")
    g.add_argument("--model", default="gpt2", help="hub id or local directory (default: gpt2)")
    g.add_argument("--no-bos", action="store_true", help="do not prepend <|endoftext|>")
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("make-checkpoint", help="random weights of a real GPT-2 config, in the hub's file layout")
    c.add_argument("--like", choices=sorted(KNOWN_CONFIGS), default="gpt2", help="which config (default: gpt2)")
    c.add_argument("--out", required=True, help="folder to write (new or empty)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--force", action="store_true",
                   help="write into a non-empty folder (replacing only the checkpoint's own file names)")
    c.set_defaults(func=cmd_make_checkpoint)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every cleanup runs (as for Ctrl-C)."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and not isinstance(e, Error) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("minigpt2: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("minigpt2: terminated", file=sys.stderr)
        return 143
    except (Error, OSError) as e:   # expected failures: one line. Anything else is a bug: a traceback.
        print(f"minigpt2: error: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
