"""model.grad: the backward pass against PyTorch autograd (float64, committed by make_grad_reference.py) and
against finite differences of the loss in float64 on random tiny models."""
from dataclasses import fields, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigpt2
from minigpt2 import Edit
from minigpt2.weights import Params, split_params

from .conftest import FIXTURES, random_model, tiny_config

REF = dict(np.load(FIXTURES / "reference_grads.npz"))
PATCH = np.load(FIXTURES / "reference_edits.npz")["patch_vector"]
CASES = {"plain": dict(), "targets": dict(targets=REF["targets_targets"]),
         "edited": dict(edits=[Edit.head(1, 3, 0.5, source=2), Edit.neuron(0, 7, 2.5), Edit.resid(2, 4, PATCH)])}


def rel_err(ours, ref) -> float:
    """max |ours - ref| relative to the largest |ref|: float32 against float64 autograd."""
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def model():
    return minigpt2.load(FIXTURES / "tiny-saved")


@pytest.mark.parametrize("case", sorted(CASES))
def test_grads_match_torch_autograd(model, case):
    g = model.grad(REF["ids"], **CASES[case])
    assert abs(g.loss - float(REF[f"{case}_loss"])) < 1e-5
    for name in ("resid_pre", "resid_mid", "attn", "mlp_acts"):
        assert rel_err(getattr(g, name), REF[f"{case}_{name}"]) < 1e-4, name
    hf = {k[len(case) + 6:]: v for k, v in REF.items() if k.startswith(f"{case}_grad.")}
    assert len(hf) == 4 + 12 * 3                                    # wte, wpe, ln_f x2, 12 per block
    ref = split_params({k: v.astype(np.float64) for k, v in hf.items()}, model.cfg)   # HF's names -> Params
    for f in fields(Params):
        if f.name == "b_K":     # q . b_K is the same for every key: the softmax cancels it, its gradient is 0
            assert np.abs(ref.b_K).max() < 1e-15 and np.abs(g.params.b_K).max() < 1e-6 * np.abs(ref.W_K).max()
        else:
            assert rel_err(getattr(g.params, f.name), getattr(ref, f.name)) < 1e-4, f.name


@pytest.mark.parametrize("targets, message", [
    ([1, 2], "targets must be 11 integers"),
    (np.full(11, 300), "target 300 at position 0 is outside the vocabulary 0..299"),
    (np.full(11, -1), "no position is scored"),
    (np.zeros(11), "targets must be 11 integers"),
])
def test_bad_targets_are_input_errors(model, targets, message):
    with pytest.raises(minigpt2.InputError, match=message):
        model.grad(REF["ids"], targets=targets)


def test_one_token_has_nothing_to_score(model):
    with pytest.raises(minigpt2.InputError, match="no position is scored"):
        model.grad([5])


def _float64(model):
    model.params = Params(**{f.name: getattr(model.params, f.name).astype(np.float64) for f in fields(Params)})
    return model


@st.composite
def tiny_case(draw):
    cfg = tiny_config(L=draw(st.integers(1, 2)), H=draw(st.integers(1, 2)), e=3, m=6, V=9, n_ctx=6)
    model = _float64(random_model(cfg, seed=draw(st.integers(0, 2**16)), scale=0.2)[0])
    T = draw(st.integers(2, 6))
    ids = np.array(draw(st.lists(st.integers(0, 8), min_size=T, max_size=T)))
    l, pos = draw(st.integers(0, cfg.n_layers - 1)), draw(st.integers(0, T - 1))
    edits = draw(st.sampled_from([
        [], [Edit.head(l, 0, 0.5, source=pos)], [Edit.neuron(l, 2, -1.5, pos=pos)],
        [Edit.resid(l, pos, np.linspace(-1, 1, cfg.d_model))], [Edit.head(l, 0, 0.0, dest=pos)],
        [Edit.head_z(l, 0, np.linspace(-1, 1, T * cfg.d_head).reshape(T, cfg.d_head))]]))
    return model, ids, edits


@settings(max_examples=20, deadline=None)
@given(tiny_case(), st.data())
def test_grads_match_finite_differences_in_float64(case, data):
    """Central differences of the loss (the model run again in float64) at six drawn entries of every weight,
    of the residual and of the activations (through a patch and a neuron edit, exact ways to move them)."""
    model, ids, edits = case
    g = model.grad(ids, edits=edits)
    h = 1e-6

    def loss_with(params=None, extra=()):
        old = model.params
        model.params = params or old
        try:
            return model.grad(ids, edits=edits + list(extra)).loss
        finally:
            model.params = old

    for f in fields(Params):
        a = getattr(model.params, f.name)
        for _ in range(2):
            i = tuple(data.draw(st.integers(0, n - 1)) for n in a.shape)
            up, down = a.copy(), a.copy()
            up[i] += h
            down[i] -= h
            fd = (loss_with(replace(model.params, **{f.name: up})) - loss_with(replace(model.params, **{f.name: down}))) / (2 * h)
            assert abs(fd - getattr(g.params, f.name)[i]) <= 1e-6 + 1e-4 * abs(fd), (f.name, i)
    # attribution: d loss / d (the scale of one neuron, one head) at 1 is sum grad x value (h = 1e-3: the
    # edit's scale is float32, so 1 +- 1e-3 is nearly exact; the O(h^2) error is ~1e-6 relative)
    tr, H3 = model.run(ids, edits=edits), 1e-3
    l, n, hd = (data.draw(st.integers(0, k - 1)) for k in (model.cfg.n_layers, model.cfg.d_mlp, model.cfg.n_heads))
    for edit, want in ((lambda s: Edit.neuron(l, n, s), (g.mlp_acts[l, :, n] * tr.mlp_acts[l, :, n]).sum()),
                       (lambda s: Edit.head(l, hd, s), (g.attn[l, hd] * tr.attn[l, hd]).sum())):
        fd = (loss_with(extra=[edit(1 + H3)]) - loss_with(extra=[edit(1 - H3)])) / (2 * H3)
        assert abs(fd - want) <= 1e-6 + 1e-4 * abs(want)


def test_grads_are_consistent_with_the_weights_they_flow_into(model):
    """resid_pre[0] is W_E[ids] + W_pos: its gradient is W_pos's; b_out[l] is added at every position of
    resid_pre[l + 1]: its gradient is that residual's, summed over positions."""
    g = model.grad(REF["ids"])
    T = len(REF["ids"])
    np.testing.assert_allclose(g.params.W_pos[:T], g.resid_pre[0], rtol=1e-6)
    assert (g.params.W_pos[T:] == 0).all()
    for l in range(model.cfg.n_layers):
        np.testing.assert_allclose(g.params.b_out[l], g.resid_pre[l + 1].sum(0), rtol=1e-5, atol=1e-8)


def _logp_sum(model, ids, edits, targets) -> float:
    """sum over scored t of log softmax(logits[t])[targets[t]], in float64, from the logits alone."""
    z = model.logits(ids, edits=edits).astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    t = np.flatnonzero(targets >= 0)
    return float(lp[t, targets[t]].sum())


@settings(max_examples=15, deadline=None)
@given(tiny_case(), st.data())
def test_attribution_and_patching_estimates_are_derivatives_of_the_log_prob(case, data):
    """attribution = d(sum log p)/d(scale) at 1, and the patching estimates = d(sum log p)/d(alpha) at 0 for
    the corrupt run with clean + alpha (clean - corrupt) patched in: central differences of the logits."""
    from minigpt2.attribution import attribution, head_patch_estimates, resid_patch_estimates
    model, ids, _ = case
    cfg, T = model.cfg, len(ids)
    targets = np.append(ids[1:], -1)
    tr, g = model.run(ids), model.grad(ids)
    att, h = attribution(tr, g), 1e-4
    l, n, hd = (data.draw(st.integers(0, k - 1)) for k in (cfg.n_layers, cfg.d_mlp, cfg.n_heads))
    for make, want in ((lambda s: Edit.neuron(l, n, s), att.neurons[l, n]), (lambda s: Edit.head(l, hd, s), att.heads[l, hd])):
        fd = (_logp_sum(model, ids, [make(1 + h)], targets) - _logp_sum(model, ids, [make(1 - h)], targets)) / (2 * h)
        assert abs(fd - want) <= 1e-5 + 1e-3 * abs(want)
    clean_ids = np.array(data.draw(st.lists(st.integers(0, 8), min_size=T, max_size=T)))
    clean = model.run(clean_ids)
    answer = np.full(T, -1)
    answer[-1] = data.draw(st.integers(0, 8))
    g = model.grad(ids, targets=answer)
    res, heads = resid_patch_estimates(clean, tr, g), head_patch_estimates(clean, tr, g)
    t = data.draw(st.integers(0, T - 1))
    mix = lambda a: tr.resid_pre[l, t] + a * (clean.resid_pre[l, t] - tr.resid_pre[l, t])  # noqa: E731
    fd = (_logp_sum(model, ids, [Edit.resid(l, t, mix(h))], answer)
          - _logp_sum(model, ids, [Edit.resid(l, t, mix(-h))], answer)) / (2 * h)
    assert abs(fd - res[l, t]) <= 1e-5 + 1e-3 * abs(fd)
    zc, zk = clean.head_outputs()[l][hd], tr.head_outputs()[l][hd]
    fd = (_logp_sum(model, ids, [Edit.head_z(l, hd, zk + h * (zc - zk))], answer)
          - _logp_sum(model, ids, [Edit.head_z(l, hd, zk - h * (zc - zk))], answer)) / (2 * h)
    assert abs(fd - heads[l, hd]) <= 1e-5 + 1e-3 * abs(fd)


def test_a_replaced_head_output_passes_no_gradient_to_its_head(model):
    """With its output before W_O replaced, head 1-2's attention, W_V, W_Q and W_K no longer touch the loss;
    W_O still does (the replaced output goes through it)."""
    z = np.load(FIXTURES / "reference_edits.npz")["z_vector"]
    g = model.grad(REF["ids"], edits=[Edit.head_z(1, 2, z)])
    assert (g.attn[1, 2] == 0).all()
    for w in (g.params.W_V, g.params.W_Q, g.params.W_K, g.params.b_V):
        assert (w[1, 2] == 0).all() and np.abs(w[1, 1]).max() > 0
    assert np.abs(g.params.W_O[1, 2]).max() > 0
