"""tune-bos's core (minigpt2.tune): its losses against log-probs computed here from the logits, and Adam's
behaviour: deterministic, lowering the loss, stopping cleanly on Ctrl-C or overflow."""
import numpy as np
import pytest

import minigpt2
from minigpt2.tune import mean_loss, split_windows, text_windows, tune_first_vector, window_loss

from .conftest import FIXTURES


@pytest.fixture(scope="module")
def model():
    return minigpt2.load(FIXTURES / "tiny-saved")


def _loss(model, ids, scored_from: int) -> float:
    """Mean -log p of ids[t + 1] at positions t >= scored_from, from model.logits, in float64."""
    z = model.logits(ids).astype(np.float64)
    lp = z - z.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    t = np.arange(scored_from, len(ids) - 1)
    return float(-lp[t, ids[t + 1]].mean())


def test_the_three_losses_score_the_same_tokens(model):
    w = np.array([5, 17, 80, 2, 41, 9])
    bos = model.cfg.bos_token_id
    assert window_loss(model, w, None) == pytest.approx(_loss(model, w, 0), rel=1e-5)
    assert window_loss(model, w, bos) == pytest.approx(_loss(model, np.r_[bos, w], 1), rel=1e-5)
    v = model.params.W_E[bos] + model.params.W_pos[0]                 # the vector <|endoftext|> puts there
    assert window_loss(model, w, v) == pytest.approx(_loss(model, np.r_[bos, w], 1), rel=1e-5)


def test_windows_and_their_split():
    ids = np.arange(23)
    ws = text_windows(ids, 5)
    assert [w.tolist() for w in ws] == [list(range(a, a + 5)) for a in (0, 5, 10, 15)]   # the tail 20..22 dropped
    train, held = split_windows(ws, 0.25, seed=0)
    assert len(held) == 1 and len(train) == 3
    assert sorted(w[0] for w in train + held) == [0, 5, 10, 15]
    with pytest.raises(minigpt2.InputError, match="needs two or more"):
        split_windows(ws[:1], 0.25, seed=0)


def _setup(model):
    rng = np.random.default_rng(0)
    ws = text_windows(rng.integers(0, 299, 120), 8)
    return split_windows(ws, 0.2, seed=0)


def test_tuning_lowers_the_loss_and_is_deterministic(model):
    train, held = _setup(model)
    a = tune_first_vector(model, train, held, steps=30, lr=0.1, seed=3, eval_every=5)
    b = tune_first_vector(model, train, held, steps=30, lr=0.1, seed=3, eval_every=5)
    np.testing.assert_array_equal(a.vector, b.vector)
    assert a.stopped == "" and a.best_step > 0 and len(a.log) == 31
    assert mean_loss(model, held, a.vector) < mean_loss(model, held, a.start) - 1e-3
    assert mean_loss(model, train, a.vector) < mean_loss(model, train, a.start)


def test_ctrl_c_keeps_the_best_vector_so_far(model):
    train, held = _setup(model)

    def interrupt(step, loss):
        if step == 12:
            raise KeyboardInterrupt
    t = tune_first_vector(model, train, held, steps=50, lr=0.1, seed=3, eval_every=5, progress=interrupt)
    assert t.stopped.startswith("interrupted at step 12") and len(t.log) == 13
    held_losses = {s: h for s, _, h in t.log if not np.isnan(h)}                 # steps 0, 5, 10
    assert sorted(held_losses) == [0, 5, 10] and t.best_step == min(held_losses, key=held_losses.get)
    assert mean_loss(model, held, t.vector) == pytest.approx(min(held_losses.values()), rel=1e-6)


def test_an_overflowing_step_stops_and_keeps_the_last_finite_vector(model):
    train, held = _setup(model)
    t = tune_first_vector(model, train, held, steps=5, lr=1e38, seed=0, eval_every=1)
    assert "at step" in t.stopped and np.isfinite(t.vector).all()
