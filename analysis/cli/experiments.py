"""minigpt2 ablate | signature | compare: the essay's proposed experiments on the command line."""
from __future__ import annotations

import numpy as np

from minigpt2.errors import InputError, check_text

from .args import _finite, _positive, _prompt, _show, load_model
from .grad import first_vector_arg, load_first_vector


def _edits(args, cfg):
    from minigpt2 import Edit

    from ..views.experiments import parse_head, parse_neuron

    edits = [Edit.neuron(*parse_neuron(n, cfg), args.scale) for n in args.neuron]
    for text in args.head:
        l, h, src = parse_head(text, cfg)
        edits.append(Edit.head(l, h, args.scale, source=src))
    if not edits:
        raise InputError("name something to ablate: --neuron L-N and/or --head L-H[:SOURCE]")
    return edits


def cmd_ablate(args) -> int:
    from minigpt2.layers import log_softmax

    from ..views.experiments import ablation_table

    text = _prompt(args.text)
    model = load_model(args)
    ids = model.encode(text, bos=not args.no_bos)
    edits = _edits(args, model.cfg)
    tokens = model.token_strings(ids)
    before, after = model.logits(ids), model.logits(ids, edits=edits)
    t = ablation_table(model, ids, edits, tokens, top=args.top, logits=(before, after))
    print("Edits: " + "; ".join(map(str, edits)))
    print("Predicted tokens, before -> after:")
    rows = t.records()
    for r in rows:
        was, now = r["predicted before"], r["predicted after"]
        mark = "" if was == now else "   (changed)"
        print(f"  {_show(r['prefix'])}|{_show(was)}| -> |{_show(now)}|{mark}")
    nxt = ids[1:]
    ok0 = int((before[:-1].argmax(-1) == nxt).sum())
    ok1 = int((after[:-1].argmax(-1) == nxt).sum())
    lp0 = float(log_softmax(before)[np.arange(len(nxt)), nxt].sum())
    lp1 = float(log_softmax(after)[np.arange(len(nxt)), nxt].sum())
    print(f"It predicts {ok0} out of {len(nxt)} tokens correctly before, {ok1} after; the actual next tokens' "
          f"total log-probability goes from {lp0:.3f} to {lp1:.3f} ({lp1 - lp0:+.3f}).")
    print("Biggest logit changes at each position:")
    for r in rows:
        if r["biggest logit changes"] != "no change":
            print(f"  {r['pos']:>3} {tokens[r['pos']]!r}: {_show(r['biggest logit changes'])}")
    return 0


def cmd_signature(args) -> int:
    from ..views.experiments import find_token, parse_head, signature

    text = _prompt(args.text)
    check_text(args.token, "--token")                  # before the model loads: a bad byte is named as such
    model = load_model(args)
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
    from minigpt2 import Edit

    from ..views.experiments import first_token_ids, variant

    n = len(args.texts)                                # every prompt is checked before the model loads
    texts = [_prompt(t, "the prompt" if n == 1 else f"prompt {i + 1} of {n}") for i, t in enumerate(args.texts)]
    for f in args.first:
        check_text(f, "--first")
    if n > 1 and args.first:
        raise InputError("--first compares one prompt under several first tokens; give one TEXT with it")
    if args.first_vector is not None and (n > 1 or args.first):
        raise InputError("--first-vector adds one line to the comparison of one prompt's first tokens: give one "
                         "TEXT, and --first or not")
    model = load_model(args)
    if len(texts) == 1:
        firsts = args.first or ["<|endoftext|>", "none"]
        variants = []
        for f in firsts:
            ids = first_token_ids(model, f) + model.encode(texts[0], bos=False).tolist()
            variants.append(variant(model, "first " + ("nothing" if f == "none" else repr(f)), ids))
        if args.first_vector is not None:
            v = load_first_vector(args.first_vector, model.cfg.d_model)
            ids = [model.cfg.bos_token_id] + model.encode(texts[0], bos=False).tolist()
            variants.append(variant(model, f"first vector {args.first_vector}", ids, edits=[Edit.resid(0, 0, v)]))
    else:
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


def add_experiment_parsers(sub) -> None:
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
    first_vector_arg(v)
    v.set_defaults(func=cmd_compare)
