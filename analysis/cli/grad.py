"""minigpt2 patch | tune-bos: the commands that need gradients, and --first-vector (a tuned position-0
vector, as tune-bos writes it) for analyze and compare."""
from __future__ import annotations

import sys

import numpy as np

from minigpt2.errors import InputError

from .args import _nonneg, _positive, _prompt, _show, load_model

FIRST_VECTOR_BYTES = 1 << 20


def load_first_vector(path: str, d_model: int) -> np.ndarray:
    """A .npy file of d_model finite floats (tune-bos's bos.npy), as float32; one InputError line otherwise.
    Never unpickled: allow_pickle=False."""
    from minigpt2.safeio import open_regular

    try:
        with open_regular(path, FIRST_VECTOR_BYTES) as f:
            v = np.load(f, allow_pickle=False) if f.read(6) == b"\x93NUMPY" and f.seek(0) == 0 else None
    except OSError as e:
        raise InputError(f"--first-vector {path}: {e.strerror or e}") from None
    except (ValueError, EOFError) as e:
        raise InputError(f"--first-vector {path} is not a .npy array of numbers ({e})") from None
    if v is None:
        raise InputError(f"--first-vector {path} is not a .npy file: give the bos.npy tune-bos wrote")
    if v.shape != (d_model,) or v.dtype.kind != "f":
        raise InputError(f"--first-vector {path} holds {v.dtype} {v.shape}: this model needs {d_model} floats "
                         "(the bos.npy that tune-bos wrote for it)")
    if not np.isfinite(v).all() or np.abs(v).max() > 1e30:
        raise InputError(f"--first-vector {path} holds values that are not finite or too large")
    return v.astype(np.float32)


def _stepper(steps: int, desc: str):
    """A progress callback: a bar on a terminal, else a line every ~10% (a log file still sees progress)."""
    if sys.stderr.isatty():
        from minigpt2.progress import tqdm
        bar = tqdm(total=steps, desc=desc, unit="step", leave=False)

        def update(step, loss):
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update()
        return update, bar.close
    every = max(1, steps // 10)

    def line(step, loss):
        if step % every == 0 or step == steps:
            print(f"{desc}: step {step}/{steps}, train loss {loss:.3f}", file=sys.stderr, flush=True)
    return line, lambda: None


def cmd_patch(args) -> int:
    from ..report.figures import figure_page, heatmap_svg
    from ..report.writer import check_out, write_folder
    from ..views.effects import correlation
    from ..views.patching import patch, patch_tables, position_labels

    clean_text, corrupt_text = _prompt(args.clean, "CLEAN"), _prompt(args.corrupt, "CORRUPT")
    check_out(args.out, force=args.force)
    model = load_model(args)
    bos = not args.no_bos
    r = patch(model, model.encode(clean_text, bos=bos), model.encode(corrupt_text, bos=bos),
              progress=sys.stderr.isatty())
    resid, heads = patch_tables(model, r)
    pos = position_labels(model, r)
    L, H = r.heads.shape
    layers = [f"L{l}" for l in range(L)]
    fig = lambda a, rows, cols, what: heatmap_svg(a.tolist(), rows, cols, what)  # noqa: E731
    rr = correlation(list(zip(r.resid.reshape(-1), r.resid_estimate.reshape(-1))))
    hr = correlation(list(zip(r.heads.reshape(-1), r.heads_estimate.reshape(-1))))
    how = ("<p>Each square patches one clean activation into the corrupt run and shows how much of the "
           f"answer's log-prob it brings back (red) or takes away (blue): the whole gap is {r.clean - r.corrupt:+.3f}. "
           "Read the residual figure by rows: a position whose row is red up to some layer carries the answer "
           "there; where the red moves to the last position, the information has been moved (by attention) to "
           "where it is predicted. The estimate is the same figure from one backward pass (attribution "
           "patching): it is exact for small changes and can miss where the model is far from linear.</p>")
    side = '<div style="display:flex;gap:2em;flex-wrap:wrap">{}{}</div>'
    sections = [("How to read it", how),
                (f"Residual stream: exact (left) and estimated (right), r = {rr:.3f}",
                 side.format(fig(r.resid.T, pos, layers, "exact: rows are positions, columns the layer patched"),
                            fig(r.resid_estimate.T, pos, layers, "estimate (one backward pass)"))),
                (f"Heads: exact (left) and estimated (right), r = {hr:.3f}",
                 side.format(fig(r.heads, layers, [f"H{h}" for h in range(H)], "exact: a head's whole output patched"),
                             fig(r.heads_estimate, layers, [f"H{h}" for h in range(H)], "estimate")))]
    title = f"Patching: {clean_text!r} into {corrupt_text!r}"
    page = figure_page(title, resid.note, sections)
    out = write_folder(args.out, {"patch.csv": resid.to_csv, "patch_heads.csv": heads.to_csv,
                                  "index.html": lambda p: p.write_text(page, encoding="utf-8")}, force=args.force)
    answer = _show(model.token_strings([r.answer])[0])
    print(f"answer {answer}: log-prob {r.clean:.3f} clean, {r.corrupt:.3f} corrupt")
    best = np.unravel_index(np.argmax(r.resid), r.resid.shape)
    print(f"largest restoring patch: resid_pre[{best[0]}] at {_show(pos[best[1]])} ({r.resid[best]:+.3f}); "
          f"exact vs estimate r = {rr:.3f} (residual), {hr:.3f} (heads)")
    print(f"Report: {out / 'index.html'} (+ patch.csv, patch_heads.csv)")
    return 0


def cmd_tune_bos(args) -> int:
    from ..report.figures import figure_page, line_svg
    from ..report.html import esc
    from ..report.writer import check_out, write_folder
    from ..views.bos import attention_table, curve_table, tune_bos, vector_words, windows_of

    check_out(args.out, force=args.force)
    model = load_model(args)
    windows = windows_of(model, args.files, args.seq_len)
    update, close = _stepper(args.steps, "tune-bos")
    try:
        r = tune_bos(model, windows, args.steps, args.lr, args.seed, progress=update)
    finally:
        close()
    curve, attn = curve_table(r), attention_table(r)
    words = vector_words(model, r.tuning.vector)
    losses = "".join(f"<tr><td>{esc(k)} first</td><td>{v:.4f}</td></tr>" for k, v in r.losses.items())
    lists = "".join(f"<p><b>{esc(k)}</b>: {esc(', '.join(f'{w} {s:.3f}' for w, s in ws))}</p>"
                    for k, ws in words.items())
    series = {"train": [(s, a) for s, a, _ in r.tuning.log if s > 0],
              "held out": [(s, b) for s, _, b in r.tuning.log]}
    sections = [("Held-out loss", f"<table>{losses}</table><p>{r.n_train} training and {r.n_held} held-out windows "
                 f"of {args.seq_len} tokens; best held-out step {r.tuning.best_step}.</p>"),
                ("Loss curve", line_svg(series, "step", "mean loss")),
                ("The tuned vector's nearest tokens", lists),
                ("Attention on position 0, before and after", attn.note + _attn_html(r))]
    page = figure_page("tune-bos: the position-0 vector", f"{len(args.files)} file(s), {args.steps} steps, lr "
                       f"{args.lr}, seed {args.seed}. {r.tuning.stopped}", sections)
    out = write_folder(args.out, {"bos.npy": lambda p: _save_npy(p, r.tuning.vector),
                                  "tune-bos.csv": curve.to_csv, "attention_on_0.csv": attn.to_csv,
                                  "index.html": lambda p: p.write_text(page, encoding="utf-8")}, force=args.force)
    for k, v in r.losses.items():
        print(f"held-out loss with {k} first: {v:.4f}")
    print(f"Wrote {out / 'bos.npy'} (use: analyze/compare --first-vector, or Edit.resid(0, 0, v)), "
          f"tune-bos.csv, attention_on_0.csv, index.html")
    if r.tuning.stopped:
        print(f"minigpt2: stopped: {r.tuning.stopped}", file=sys.stderr)
        return 1 if "diverged" in r.tuning.stopped or "overflowed" in r.tuning.stopped else 130
    return 0


def _save_npy(path, a: np.ndarray) -> None:
    with open(path, "wb") as f:                      # a file object: np.save would add ".npy" to a path
        np.save(f, a, allow_pickle=False)


def _attn_html(r) -> str:
    from ..report.figures import heatmap_svg
    L, H = r.attn0_before.shape
    cols = [f"H{h}" for h in range(H)]
    rows = [f"L{l}" for l in range(L)]
    return ('<div style="display:flex;gap:2em;flex-wrap:wrap">'
            + heatmap_svg(r.attn0_before.tolist(), rows, cols, "before: <|endoftext|> first", top=1.0)
            + heatmap_svg(r.attn0_after.tolist(), rows, cols, "after: the tuned vector first", top=1.0)
            + heatmap_svg((r.attn0_after - r.attn0_before).tolist(), rows, cols, "change") + "</div>"
            "<p>Each head's mean attention on position 0 (red: all of it, white: none), and the change (red: more "
            "with the tuned vector, blue: less).</p>")


def _lr(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"--lr must be a number, got {text!r}") from None
    if not 0 < v < 1e6:
        raise InputError(f"--lr must be > 0 (e.g. 0.01), got {text!r}")
    return v


def add_grad_parsers(sub) -> None:
    p = sub.add_parser("patch", help="activation patching, exact and estimated: which position at which layer "
                                     "carries the answer")
    p.add_argument("clean", metavar="CLEAN", help="the prompt whose answer is traced")
    p.add_argument("corrupt", metavar="CORRUPT", help="the same number of tokens, changed where it matters")
    p.add_argument("--model", default="gpt2", help="hub id or local directory (default: gpt2)")
    p.add_argument("--out", default="patch", help="report folder (default: ./patch)")
    p.add_argument("--force", action="store_true", help="write into a folder that holds files it did not write")
    p.add_argument("--no-bos", action="store_true", help="do not prepend <|endoftext|>")
    p.set_defaults(func=cmd_patch)

    t = sub.add_parser("tune-bos", help="the essay's experiment: tune the position-0 vector on text")
    t.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files")
    t.add_argument("--model", default="gpt2", help="hub id or local directory (default: gpt2)")
    t.add_argument("--out", required=True, help="folder for bos.npy, tune-bos.csv and index.html")
    t.add_argument("--steps", type=_positive, default=200, help="Adam steps (default: 200)")
    t.add_argument("--seq-len", type=_positive, default=64, help="tokens per window (default: 64)")
    t.add_argument("--lr", type=_lr, default=0.01, help="Adam's learning rate (default: 0.01)")
    t.add_argument("--seed", type=_nonneg, default=0, help="random seed (default: 0)")
    t.add_argument("--force", action="store_true", help="write into a folder that holds files it did not write")
    t.set_defaults(func=cmd_tune_bos)


def first_vector_arg(parser) -> None:
    parser.add_argument("--first-vector", metavar="BOS.NPY", default=None,
                        help="replace position 0 (<|endoftext|>) with this vector, e.g. tune-bos's bos.npy")
