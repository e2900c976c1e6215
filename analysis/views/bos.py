"""The essay's BOS experiment as a command: tune the position-0 vector on text (minigpt2.tune), then say what
it bought: three held-out losses, the loss curve, the vector's nearest words, and each head's attention on
position 0 before and after."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minigpt2 import Edit
from minigpt2.errors import InputError
from minigpt2.safeio import read_regular
from minigpt2.tune import Tuning, mean_loss, split_windows, text_windows, tune_first_vector

from ..report.table import Table
from ..search.knn import topk
from ..search.lookup import nearest_words, vocab_of
from ..search.spaces import show_token

MAX_TEXT_BYTES = 1 << 30
HELD_OUT = 0.2               # the share of windows held out


def read_text(path) -> str:
    """A text file's contents: a regular file of UTF-8 text (InputError naming it otherwise)."""
    try:
        data = read_regular(path, MAX_TEXT_BYTES)
    except OSError as e:
        raise InputError(f"{path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}): give "
                         "plain text files") from None


def windows_of(model, paths, seq_len: int) -> list[np.ndarray]:
    """Every file encoded alone (no BOS), cut into windows of seq_len tokens; checked before any work."""
    n_ctx = model.cfg.n_ctx
    if not 2 <= seq_len <= n_ctx - 1:
        raise InputError(f"--seq-len {seq_len}: a window and the vector before it must fit the context, so "
                         f"--seq-len is 2..{n_ctx - 1} for this model (n_ctx {n_ctx})")
    out = []
    for path in paths:
        ids = model.encode(read_text(path), bos=False)
        out += text_windows(ids, seq_len)
    if len(out) < 2:
        raise InputError(f"the text makes {len(out)} window(s) of {seq_len} tokens: tune-bos needs two or more "
                         "(one to train on, one held out); give more text or a smaller --seq-len")
    return out


@dataclass
class BosResult:
    tuning: Tuning
    losses: dict[str, float]          # held-out loss with "<|endoftext|>", "tuned vector", "nothing" first
    attn0_before: np.ndarray          # [L, H] attention on position 0, <|endoftext|> first (held-out mean)
    attn0_after: np.ndarray           # [L, H] the same with the tuned vector first
    n_train: int
    n_held: int


def tune_bos(model, windows: list, steps: int, lr: float, seed: int, progress=None) -> BosResult:
    train, held = split_windows(windows, HELD_OUT, seed)
    tuning = tune_first_vector(model, train, held, steps, lr, seed, progress=progress)
    bos = model.cfg.bos_token_id
    losses = {"<|endoftext|>": mean_loss(model, held, bos), "tuned vector": mean_loss(model, held, tuning.vector),
              "nothing": mean_loss(model, held, None)}
    before = np.mean([model.run(np.concatenate([[bos], w])).attention_on_0() for w in held], axis=0)
    after = np.mean([model.run(np.concatenate([[bos], w]), edits=[Edit.resid(0, 0, tuning.vector)]).attention_on_0()
                     for w in held], axis=0)
    return BosResult(tuning, losses, before, after, len(train), len(held))


def curve_table(r: BosResult) -> Table:
    rows = [[s, None if np.isnan(a) else a, None if np.isnan(b) else b] for s, a, b in r.tuning.log]
    return Table("tune-bos", "Loss curve", ["step", "train loss", "held-out loss"], rows,
                 "Mean next-token loss per step: on the step's batch of training windows, and on the held-out "
                 "windows every 10 steps (step 0: the <|endoftext|> vector itself).")


def attention_table(r: BosResult) -> Table:
    L, H = r.attn0_before.shape
    rows = [[l, h, float(r.attn0_before[l, h]), float(r.attn0_after[l, h]),
             float(r.attn0_after[l, h] - r.attn0_before[l, h])] for l in range(L) for h in range(H)]
    return Table("attention_on_0", "Attention on position 0", ["layer", "head", "before", "after", "change"], rows,
                 "Each head's mean attention on position 0, over the queries after it, on the held-out windows: "
                 "with <|endoftext|> first (before) and with the tuned vector (after).")


def vector_words(model, v: np.ndarray, k: int = 10) -> dict[str, list[tuple[str, float]]]:
    """The tuned vector's nearest tokens: as an input at position 0 (cosine to W_E[v] + W_pos[0]) and as the
    unembedding reads it (the report's "unembed" space)."""
    p = model.params
    k = min(k, len(vocab_of(model).words), p.W_E.shape[0])               # a toy vocabulary has few words
    ids, scores = topk(v[None], p.W_E + p.W_pos[0], k)
    as_input = [(show_token(s), float(x)) for s, x in zip(model.token_strings(ids[0].tolist()), scores[0].tolist())]
    return {"as a position-0 input (W_E + W_pos[0])": as_input,
            "read by the unembedding": [(show_token(w), s) for w, s in nearest_words(model, v, "unembed", k=k)]}
