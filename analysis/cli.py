"""Command line: minigpt2 analyze | ablate | signature | compare | generate | make-checkpoint.

It sits above both packages: the one place that drives the model (minigpt2) and the analysis. Expected
failures (minigpt2.Error, OSError) print one line, `minigpt2: error: ...`, and exit 1; an interrupt
(Ctrl-C) exits 130 and SIGTERM 143, with nothing partial left behind; anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys

import numpy as np

from minigpt2.errors import Error, InputError, check_text

from .matches import DEFAULT_BIAS_THRESHOLD


def _integer(text: str, low: int, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if n < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {n}")
    return n


def _positive(text: str) -> int:
    return _integer(text, 1, "a positive integer")


def _nonneg(text: str) -> int:
    return _integer(text, 0, "an integer >= 0")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _threshold(text: str) -> float:
    x = _number(text)
    if not math.isfinite(x) or x < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return x


_CONTROL = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def _show(text: str) -> str:
    """A token or prefix on one terminal line: newlines, returns and tabs written as escapes."""
    return text.translate(_CONTROL)


def _finite(text: str) -> float:
    x = _number(text)
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
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

    out = make_checkpoint(KNOWN_CONFIGS[args.like], args.out, seed=args.seed, progress=sys.stderr.isatty(),
                          force=args.force)
    print(f"wrote random {args.like}-shaped weights to {out} (for offline use: the words they produce mean nothing)")
    return 0


def _listed(values: list[str]) -> list[str]:
    """--heads 0-1,5-10 --heads 2-3 -> ["0-1", "5-10", "2-3"]."""
    return [x for v in values for x in v.split(",") if x.strip()]


def cmd_analyze(args) -> int:
    from minigpt2 import load

    from .main import analyze, summary_lines
    from .writer import check_out

    from .experiments import parse_head, parse_neuron

    text = _prompt(args.text)
    check_out(args.out, force=args.force)          # before any computation: a bad --out costs nothing
    model = load(args.model)
    heads = []
    for h in _listed(args.heads):
        l, h_, src = parse_head(h, model.cfg)
        if src is not None:
            raise InputError(f"--heads takes LAYER-HEAD (e.g. 0-1), got {h!r}")
        heads.append((l, h_))
    neurons = [parse_neuron(n, model.cfg) for n in _listed(args.neurons)]
    report = analyze(model, text, k=args.k, metric=args.metric, bias_threshold=args.bias_threshold,
                     position=args.position, bos=not args.no_bos, use_cache=not args.no_cache,
                     progress=sys.stderr.isatty(), effects=args.effects, heads=heads, neurons=neurons)
    out = report.write(args.out, force=args.force)
    print("\n".join(_show(line) for line in summary_lines(report, out)))
    return 0


def _edits(args, cfg):
    from minigpt2 import Edit

    from .experiments import parse_head, parse_neuron

    edits = [Edit.neuron(*parse_neuron(n, cfg), args.scale) for n in args.neuron]
    for text in args.head:
        l, h, src = parse_head(text, cfg)
        edits.append(Edit.head(l, h, args.scale, source=src))
    if not edits:
        raise InputError("name something to ablate: --neuron L-N and/or --head L-H[:SOURCE]")
    return edits


def cmd_ablate(args) -> int:
    from minigpt2 import load

    from .experiments import ablation_table, log_softmax

    text = _prompt(args.text)
    model = load(args.model)
    ids = model.encode(text, bos=not args.no_bos)
    edits = _edits(args, model.cfg)
    tokens = model.token_strings(ids)
    t = ablation_table(model, ids, edits, tokens, top=args.top)
    print("Edits: " + "; ".join(map(str, edits)))
    print("Predicted tokens, before -> after:")
    for r in t.rows:
        mark = "" if r[2] == r[3] else "   (changed)"
        print(f"  {_show(r[1])}|{_show(r[2])}| -> |{_show(r[3])}|{mark}")
    before, after = model.logits(ids), model.logits(ids, edits=edits)
    nxt = ids[1:]
    ok0 = int((before[:-1].argmax(-1) == nxt).sum())
    ok1 = int((after[:-1].argmax(-1) == nxt).sum())
    drop = float((log_softmax(before)[np.arange(len(nxt)), nxt] - log_softmax(after)[np.arange(len(nxt)), nxt]).sum())
    print(f"It predicts {ok0} out of {len(nxt)} tokens correctly before, {ok1} after; the actual next tokens' "
          f"log-probability drops by {drop:.3f} in total.")
    print("Biggest logit changes at each position:")
    for r in t.rows:
        print(f"  {r[0]:>3} {tokens[r[0]]!r}: {_show(r[7])}")
    return 0


def cmd_signature(args) -> int:
    from minigpt2 import load

    from .experiments import find_token, parse_head, signature

    text = _prompt(args.text)
    model = load(args.model)
    ids = model.encode(text, bos=not args.no_bos)
    l, h, src = parse_head(args.head, model.cfg)
    if src is not None:
        raise InputError("--head takes LAYER-HEAD here; the token is given by --token")
    tokens = model.token_strings(ids)
    pos = find_token(tokens, args.token)
    cos = signature(model.run(ids), l, h, pos)                                  # [L, H]
    L, H = cos.shape
    print(f"Cosine between the message {tokens[pos]!r} (position {pos}) leaves at head {l}-{h} and the pattern "
          f"{tokens[pos]!r} leaves at each later head: a high value means a later head finds this token by "
          "what the message wrote (a context signature).")
    print("layer " + "".join(f"{'H' + str(j):>7}" for j in range(H)))
    for r in range(l + 1, L):
        print(f"{r:>5} " + "".join(f"{cos[r, j]:>7.3f}" for j in range(H)))
    if l + 1 >= L:
        print("(no later layers)")
    return 0


def cmd_compare(args) -> int:
    from minigpt2 import load

    from .experiments import first_token_ids, variant

    model = load(args.model)
    texts = [_prompt(t) for t in args.texts]
    if len(texts) == 1:
        firsts = args.first or ["<|endoftext|>", "none"]
        variants = []
        for f in firsts:
            check_text(f, "--first")
            ids = first_token_ids(model, f) + model.encode(texts[0], bos=False).tolist()
            variants.append(variant(model, "first " + ("nothing" if f == "none" else repr(f)), ids))
    else:
        if args.first:
            raise InputError("--first compares one prompt under several first tokens; give one TEXT with it")
        variants = [variant(model, repr(t), model.encode(t, bos=not args.no_bos)) for t in texts]
    for v in variants:
        print(f"== {v.label}: predicts {v.correct} out of {v.total} tokens correctly")
        for t in range(len(v.ids)):
            ok = " ✓" if t + 1 < len(v.ids) and v.predicted[t] == v.tokens[t + 1] else ""
            print(f"  {_show(''.join(v.tokens[: t + 1]))}|{_show(v.predicted[t])}|{ok}")
        print("  largest direct effects on the last prediction: "
              + ", ".join(f"{lab} {e:+.3f}" for lab, e in v.stream))
        print("  strongest BOS neurons (activation at position 0): "
              + (", ".join(f"{lab} {a:.3f}" for lab, a in v.bos_neurons) or "none"))
    print("Side by side: " + " | ".join(f"{v.label}: {v.correct}/{v.total}" for v in variants))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line like every other error (exit status 2, as for any usage error)."""

    def error(self, message: str):
        self.exit(2, f"minigpt2: error: {self.prog.removeprefix('minigpt2 ')}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from minigpt2.config import KNOWN_CONFIGS

    parser = _Parser(prog="minigpt2", description="A NumPy GPT-2 that shows its patterns and messages.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    a.add_argument("--heads", action="append", default=[], metavar="L-H[,L-H...]",
                   help="heads for the 'selected' tab (opened first) and selected.csv, e.g. 0-0,5-10")
    a.add_argument("--neurons", action="append", default=[], metavar="L-N[,L-N...]",
                   help="neurons for the 'selected' tab and selected.csv, e.g. 2-666,2-1825")
    a.add_argument("--effects", action="store_true",
                   help="add the total-effects tab: every head and the top 256 neurons ablated one at a time")
    a.set_defaults(func=cmd_analyze)

    b = sub.add_parser("ablate", help="predictions before and after scaling neurons or heads (0: ablate)")
    b.add_argument("text")
    b.add_argument("--neuron", action="append", default=[], metavar="L-N", help="e.g. 2-666 (repeatable)")
    b.add_argument("--head", action="append", default=[], metavar="L-H[:SRC]",
                   help="e.g. 5-10, or 5-10:3 for only the message from position 3 (repeatable)")
    b.add_argument("--scale", type=_finite, default=0.0, help="multiply by this instead of 0 (default: 0)")
    b.add_argument("--top", type=_positive, default=5, help="logit changes shown per position (default: 5)")
    b.add_argument("--model", default="gpt2", help="hub id or local directory (default: gpt2)")
    b.add_argument("--no-bos", action="store_true", help="do not prepend <|endoftext|>")
    b.set_defaults(func=cmd_ablate)

    s_ = sub.add_parser("signature", help="a head's message for a token vs that token's patterns at later heads")
    s_.add_argument("text")
    s_.add_argument("--head", required=True, metavar="L-H", help="the head whose message is compared, e.g. 0-0")
    s_.add_argument("--token", required=True, help="the token, e.g. home (leading space optional)")
    s_.add_argument("--model", default="gpt2", help="hub id or local directory (default: gpt2)")
    s_.add_argument("--no-bos", action="store_true", help="do not prepend <|endoftext|>")
    s_.set_defaults(func=cmd_signature)

    v = sub.add_parser("compare", help="one prompt under several first tokens, or several prompts, side by side")
    v.add_argument("texts", nargs="+", metavar="TEXT")
    v.add_argument("--first", action="append", default=[],
                   help='what sits at position 0: "<|endoftext|>", any text (e.g. a newline), or none; repeatable '
                        '(default: <|endoftext|> and none)')
    v.add_argument("--model", default="gpt2", help="hub id or local directory (default: gpt2)")
    v.add_argument("--no-bos", action="store_true", help="several prompts: do not prepend <|endoftext|>")
    v.set_defaults(func=cmd_compare)

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


if __name__ == "__main__":
    sys.exit(main())
