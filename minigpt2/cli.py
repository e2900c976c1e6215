"""Command line: minigpt2 analyze | generate | make-checkpoint."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


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


def cmd_generate(args) -> int:
    from .model import load

    model = load(args.model)
    ids = model.encode(args.prompt, bos=not args.no_bos)
    out = model.generate(ids, args.n)
    start = 1 if not args.no_bos else 0
    print(model.decode(out[start:]))
    return 0


def cmd_make_checkpoint(args) -> int:
    from .checkpoint import make_checkpoint
    from .config import KNOWN_CONFIGS

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise ValueError(f"{out} exists and is not empty (use --force to overwrite)")
    make_checkpoint(KNOWN_CONFIGS[args.like], out, seed=args.seed, progress=sys.stderr.isatty())
    print(f"wrote random {args.like}-shaped weights to {out} (for offline use: the words they produce mean nothing)")
    return 0


def cmd_analyze(args) -> int:
    from analysis.main import analyze_cli

    return analyze_cli(args)


def build_parser() -> argparse.ArgumentParser:
    from .config import KNOWN_CONFIGS

    parser = argparse.ArgumentParser(prog="minigpt2", description="A NumPy GPT-2 that shows its patterns and messages.")
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="vocabulary analysis of a prompt: HTML report + CSV tables")
    a.add_argument("text", help="the prompt, e.g. 'The baseball player hit a home run'")
    a.add_argument("--model", default="gpt2", help="hub id or local directory (default: gpt2)")
    a.add_argument("--out", default="minigpt2-report", help="report directory (default: ./minigpt2-report)")
    a.add_argument("-k", type=_positive, default=10, help="words per vector (default: 10)")
    a.add_argument("--metric", choices=("cosine", "dot"), default="cosine", help="similarity (default: cosine)")
    a.add_argument("--bias-threshold", type=float, default=None,
                   help="show '(high bias)' when the matches' mean |token bias| exceeds this many standard "
                        "deviations of the bias (default: 2.0)")
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
    c.add_argument("--out", required=True, help="directory to write")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--force", action="store_true", help="write into a non-empty directory")
    c.set_defaults(func=cmd_make_checkpoint)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("minigpt2: interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError, IndexError) as e:  # LoadError, InputError, ... : one line, no traceback
        print(f"minigpt2: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
