"""The essay's BOS experiment: tune the one vector at position 0 (the whole residual there, which replaces
W_E[<|endoftext|>] + W_pos[0]) to lower the next-token loss of text that follows it, with Adam in NumPy.

Every window is seq_len tokens of the text; a sequence is the first vector (as Edit.resid(0, 0, v)) then the
window. Every loss here, with the tuned vector, with <|endoftext|> or with nothing first, scores the same
predictions: each window's tokens 1.., from what comes before them (the first token of a window has nothing
of the text before it, so it is never scored).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .edits import Edit
from .errors import InputError, NumericError


def text_windows(ids: np.ndarray, seq_len: int) -> list[np.ndarray]:
    """Consecutive windows of seq_len tokens (a shorter tail is dropped): [seq_len] each."""
    return [ids[a:a + seq_len] for a in range(0, len(ids) - seq_len + 1, seq_len)]


def split_windows(windows: list, held_out: float, seed: int) -> tuple[list, list]:
    """(train, held out): a seeded shuffle, at least one window each (InputError with fewer than two)."""
    if len(windows) < 2:
        raise InputError(f"the text makes {len(windows)} window(s) of tokens: tune-bos needs two or more (one "
                         "to train on, one held out): give more text or a smaller --seq-len")
    order = np.random.default_rng(seed).permutation(len(windows))
    n_held = min(len(windows) - 1, max(1, round(held_out * len(windows))))
    return [windows[i] for i in order[n_held:]], [windows[i] for i in order[:n_held]]


def window_loss(model, window: np.ndarray, first, grad: bool = False):
    """Mean loss of predicting window[1:] with first at position 0: a vector [D], a token id, or None (nothing
    first). grad (vector only): also d loss / d the vector, [D]."""
    w = np.asarray(window, np.int64)
    if first is None:
        return model.grad(w).loss                                    # targets w[1:], the last unscored
    bos = model.cfg.bos_token_id
    ids = np.concatenate([[bos], w])                                 # [T + 1]
    targets = np.append(w, -1)
    targets[0] = -1                                                  # window[0]: not scored, as with nothing first
    if isinstance(first, (int, np.integer)):
        return model.grad(np.concatenate([[int(first)], w]), targets=targets).loss
    g = model.grad(ids, targets=targets, edits=[Edit.resid(0, 0, first)])
    return (g.loss, g.resid_pre[0, 0]) if grad else g.loss


def mean_loss(model, windows: list, first) -> float:
    return float(np.mean([window_loss(model, w, first) for w in windows]))


@dataclass
class Tuning:
    """What tune_first_vector found; rows of the log: (step, train loss, held-out loss or NaN)."""
    vector: np.ndarray                   # [D] float32: the best (lowest held-out loss) vector so far
    start: np.ndarray                    # [D] W_E[bos] + W_pos[0], where it started
    log: list = field(default_factory=list)
    best_step: int = 0
    stopped: str = ""                    # why it stopped early ("" when it ran every step)


def tune_first_vector(model, train: list, held: list, steps: int, lr: float, seed: int, batch: int = 4,
                      eval_every: int = 10, progress=None) -> Tuning:
    """Adam on the position-0 vector over the train windows (a seeded batch a step), evaluated on the held
    windows every eval_every steps and at the end. Ctrl-C (KeyboardInterrupt) stops it and keeps the best
    vector so far; a non-finite loss stops it, naming the step, keeping the last finite vector.
    progress: called with (step, train loss) after each step (a bar's update)."""
    p = model.params
    v = (p.W_E[model.cfg.bos_token_id] + p.W_pos[0]).astype(np.float64)
    tuning = Tuning(vector=v.astype(np.float32), start=v.astype(np.float32))
    best = mean_loss(model, held, v.astype(np.float32))
    tuning.log.append((0, float("nan"), best))
    rng = np.random.default_rng(seed)
    m1, m2, b1, b2 = np.zeros_like(v), np.zeros_like(v), 0.9, 0.999
    step = 0
    try:
        for step in range(1, steps + 1):
            pick = rng.choice(len(train), size=min(batch, len(train)), replace=False)
            losses, grads = zip(*(window_loss(model, train[i], v.astype(np.float32), grad=True) for i in pick))
            loss, g = float(np.mean(losses)), np.mean(grads, axis=0)
            if not (np.isfinite(loss) and np.isfinite(g).all()):
                tuning.stopped = f"the loss diverged (not finite) at step {step}: kept the last finite vector"
                break
            m1 = b1 * m1 + (1 - b1) * g
            m2 = b2 * m2 + (1 - b2) * g * g
            v = v - lr * (m1 / (1 - b1 ** step)) / (np.sqrt(m2 / (1 - b2 ** step)) + 1e-8)
            held_loss = float("nan")
            if step % eval_every == 0 or step == steps:
                held_loss = mean_loss(model, held, v.astype(np.float32))
                if held_loss < best:
                    best, tuning.vector, tuning.best_step = held_loss, v.astype(np.float32), step
            tuning.log.append((step, loss, held_loss))
            if progress:
                progress(step, loss)
    except KeyboardInterrupt:
        tuning.stopped = f"interrupted at step {step}: kept the best vector so far (step {tuning.best_step})"
    except NumericError:
        tuning.stopped = f"the forward pass overflowed at step {step}: kept the last finite vector"
    return tuning
