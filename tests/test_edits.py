"""Edits (interventions): parity with HF transformers running the same edit through hooks, and properties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigpt2
from minigpt2 import Edit

from .conftest import FIXTURES, random_model, tiny_config

REF = dict(np.load(FIXTURES / "reference_edits.npz"))

# The cases of tests/fixtures/make_reference.py --edits, as minigpt2 edits.
CASES = {
    "neuron_all": [Edit.neuron(1, 5, 0.0)],
    "neuron_pos": [Edit.neuron(0, 7, 2.5, pos=3)],
    "head_all": [Edit.head(1, 2, 0.0)],
    "head_dest": [Edit.head(2, 0, 0.5, dest=6)],
    "head_source": [Edit.head(1, 3, 0.0, source=2)],
    "head_source_half": [Edit.head(0, 1, 0.5, source=0)],
    "resid_patch": [Edit.resid(2, 4, REF["patch_vector"])],
    "resid_patch_layer0": [Edit.resid(0, 0, REF["patch_vector0"])],
}


@pytest.fixture(scope="module")
def model():
    return minigpt2.load(FIXTURES / "tiny-saved")


@pytest.mark.parametrize("case", sorted(CASES))
def test_edited_logits_match_hf_hooks(model, case):
    """Tolerance as the clean parity tests: HF and NumPy float32 agree to ~1e-6; 1e-4 leaves room for BLAS."""
    tr = model.run(REF["ids"], edits=CASES[case])
    ref = REF[f"{case}_logits"]
    assert np.abs(ref - REF["base_logits"]).max() > 1e-3               # the edit changes something
    np.testing.assert_allclose(tr.logits, ref, rtol=1e-4, atol=1e-4)
    assert tr.edits == tuple(CASES[case])


def test_patching_from_another_run_is_activation_patching(model):
    other = model.run(np.load(FIXTURES / "reference.npz")["full_ids"][:8])
    np.testing.assert_allclose(other.resid_pre[2, 4], REF["patch_vector"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_edited_trace_still_decomposes_exactly(model, case):
    tr = model.run(REF["ids"], edits=CASES[case])
    for layer in range(4):
        for pos in (0, 4, 10):
            d = tr.decompose(layer, pos)
            assert d.max_abs_error() < 1e-4, (case, layer, pos)


def test_ablated_neuron_row_is_zero_and_patch_is_its_own_row(model):
    tr = model.run(REF["ids"], edits=[Edit.neuron(1, 5, 0.0), Edit.resid(2, 4, REF["patch_vector"])])
    d = tr.decompose(3, 4)
    labels = d.labels
    assert labels[0] == "resid_pre[2] patched" and d.kind[0] == "patch"
    np.testing.assert_array_equal(d.vectors[0], REF["patch_vector"])
    assert not any(label.startswith(("L0 ", "L1 ")) for label in labels)        # stood for by the patch
    d = tr.decompose(2, 7)
    i = d.labels.index("L1 N5")
    assert (d.vectors[i] == 0).all() and d.weight[i] == 0 and np.abs(d.vectors[i - 1]).max() > 0


def test_bad_edits_are_clear_errors(model):
    with pytest.raises(minigpt2.InputError, match="edit head 4 is outside 0..3"):
        model.run([1, 2], edits=[Edit.head(0, 4)])
    with pytest.raises(minigpt2.InputError, match="edit position 5 is outside 0..1"):
        model.run([1, 2], edits=[Edit.neuron(0, 1, pos=5)])
    with pytest.raises(minigpt2.InputError, match=r"vector of shape \(48,\), got shape \(3,\)"):
        model.run([1, 2], edits=[Edit.resid(0, 0, np.zeros(3))])
    with pytest.raises(minigpt2.InputError, match="must be made with minigpt2.Edit"):
        model.run([1, 2], edits=["L0 N5"])


SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def model_and_ids(draw):
    cfg = tiny_config(L=draw(st.integers(1, 3)), H=draw(st.integers(1, 3)), e=4, m=12, V=30, n_ctx=10)
    model, _ = random_model(cfg, seed=draw(st.integers(0, 2**16)), scale=0.3)
    T = draw(st.integers(1, 10))
    ids = np.array(draw(st.lists(st.integers(0, cfg.d_vocab - 1), min_size=T, max_size=T)))
    return model, ids


@SETTINGS
@given(model_and_ids(), st.data())
def test_scale_one_and_own_vector_change_nothing(case, data):
    model, ids = case
    cfg, T = model.cfg, len(ids)
    clean = model.run(ids)
    l, pos = data.draw(st.integers(0, cfg.n_layers - 1)), data.draw(st.integers(0, T - 1))
    edits = [Edit.neuron(l, data.draw(st.integers(0, cfg.d_mlp - 1)), 1.0),
             Edit.head(l, data.draw(st.integers(0, cfg.n_heads - 1)), 1.0, source=data.draw(st.none() | st.just(pos))),
             Edit.resid(l, pos, clean.resid_pre[l, pos])]
    np.testing.assert_array_equal(model.run(ids, edits=edits).logits, clean.logits)


@SETTINGS
@given(model_and_ids())
def test_ablating_every_head_leaves_attention_adding_only_b_O(case):
    """An independent forward pass whose attention blocks add b_O alone, in float64."""
    from .conftest import _ln, gelu64
    model, ids = case
    cfg, p = model.cfg, model.params
    edits = [Edit.head(l, h, 0.0) for l in range(cfg.n_layers) for h in range(cfg.n_heads)]
    tr = model.run(ids, edits=edits)
    x = p.W_E[ids].astype(np.float64) + p.W_pos[: len(ids)]
    for l in range(cfg.n_layers):
        x = x + p.b_O[l]
        u = _ln(x, p.ln2_w[l], p.ln2_b[l], cfg.layer_norm_eps) @ p.W_in[l] + p.b_in[l]
        x = x + gelu64(u) @ p.W_out[l] + p.b_out[l]
    logits = _ln(x, p.lnf_w, p.lnf_b, cfg.layer_norm_eps) @ p.W_E.T.astype(np.float64)
    np.testing.assert_allclose(tr.logits, logits, rtol=1e-4, atol=1e-4)
    assert (tr.attn == 0).all()
