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
    "resid_patch_final": [Edit.resid(3, 4, REF["patch_vector"])],                 # layer L: the input of ln_f
    "head_pair": [Edit.head(1, 0, 0.0, source=3, dest=8)],
    "head_z": [Edit.head_z(1, 2, REF["z_vector"])],
    "combo": [Edit.head(1, 3, 0.5, source=2), Edit.neuron(1, 5, 0.0), Edit.neuron(1, 5, 3.0, pos=2),
              Edit.head(2, 0, 0.5, dest=6), Edit.resid(2, 4, REF["patch_vector"]),
              Edit.resid(1, 7, REF["patch_vector0"])],
}
FIRST_LAYER = {case: min(e.layer for e in edits) for case, edits in CASES.items()}


@pytest.fixture(scope="module")
def model():
    return minigpt2.load(FIXTURES / "tiny-saved")


@pytest.mark.parametrize("block", [128, 4])
@pytest.mark.parametrize("case", sorted(CASES))
def test_edited_logits_match_hf_hooks(model, case, block, monkeypatch):
    """Every edit kind through run, logits, and a pass resumed at the edit's first layer from the clean run,
    against HF's own forward pass under hooks. block 4: the attention works in blocks of 4 query rows, so a
    destination (query 6, 8) falls in a later block. Tolerance as the clean parity tests: HF and NumPy float32
    agree to ~1e-6; 1e-4 leaves room for BLAS."""
    from minigpt2 import forward
    monkeypatch.setattr(forward, "BLOCK", block)
    ids, edits, ref = REF["ids"], CASES[case], REF[f"{case}_logits"]
    assert np.abs(ref - REF["base_logits"]).max() > 1e-3               # the edit changes something
    tr = model.run(ids, edits=edits)
    np.testing.assert_allclose(tr.logits, ref, rtol=1e-4, atol=1e-4)
    assert tr.edits == tuple(edits)
    np.testing.assert_allclose(model.logits(ids, edits=edits), ref, rtol=1e-4, atol=1e-4)
    l0 = FIRST_LAYER[case]
    resumed = model.logits(ids, edits=edits, start=l0, resid=model.run(ids).resid_pre[l0])
    np.testing.assert_allclose(resumed, ref, rtol=1e-4, atol=1e-4)


def test_attention_blocks_change_nothing_on_a_clean_run(model, reference, monkeypatch):
    """Blocks of 1, 5 and 128 query rows give HF's attention on the 24-token sequence (several blocks, a
    partial last one)."""
    from minigpt2 import forward
    ids = reference["full_ids"]
    for block in (1, 5, 128):
        monkeypatch.setattr(forward, "BLOCK", block)
        np.testing.assert_allclose(model.run(ids).attn, reference["full_attentions"], atol=1e-4)


def test_patching_from_another_run_is_activation_patching(model):
    other = model.run(np.load(FIXTURES / "reference.npz")["full_ids"][:8])
    np.testing.assert_allclose(other.resid_pre[2, 4], REF["patch_vector"], rtol=1e-4, atol=1e-5)
    # a head's output before W_O, as HF's c_proj reads it: what Edit.head_z takes
    np.testing.assert_allclose(model.run(REF["z_ids"]).head_outputs()[1][2], REF["z_vector"], rtol=1e-4, atol=1e-5)


def test_a_replaced_head_output_is_one_row_per_position(model):
    tr = model.run(REF["ids"], edits=CASES["head_z"])
    d = tr.decompose(2, 5)
    i = d.labels.index("L1 H2 output patched")
    np.testing.assert_allclose(d.vectors[i], REF["z_vector"][5] @ model.params.W_O[1, 2], rtol=1e-6)
    assert not any(lb.startswith("L1 H2 message") for lb in d.labels) and "L1 H1 message from 5" in d.labels
    np.testing.assert_allclose(tr.head_outputs()[1][2], REF["z_vector"])


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


BAD_EDITS = [  # (edits, what the one-line error says): every one an InputError, raised before any work
    ([Edit.head(0, 1, dest=2)], "edit dest 2 is outside 0..1"),
    ([Edit.head(0, 1, source=-1)], "edit source -1 is outside 0..1"),
    ([Edit.head(0, 1, dest=1.0)], "edit dest must be an integer"),
    ([Edit.neuron(3, 1)], "edit layer 3 is outside 0..2"),
    ([Edit.neuron(0, 80)], "edit neuron 80 is outside 0..79"),
    ([Edit.resid(4, 0, np.zeros(48))], "edit layer 4 is outside 0..3"),
    (Edit.neuron(0, 1), "wrap one edit in a list"),
    (3, "edits must be a list"),
    ("L0 N5", "edits must be a list"),
]


@pytest.mark.parametrize("edits, message", BAD_EDITS)
def test_every_bad_edit_is_an_input_error(model, edits, message):
    for call in (lambda: model.run([1, 2], edits=edits), lambda: model.logits([1, 2], edits=edits)):
        with pytest.raises(minigpt2.InputError, match=message):
            call()


@pytest.mark.parametrize("make, message", [
    (lambda: Edit.neuron(0, 1, scale="0"), "scale must be a real number"),
    (lambda: Edit.neuron(0, 1, scale=True), "scale must be a real number"),
    (lambda: Edit.head(0, 1, scale=1e300), "finite in float32"),
    (lambda: Edit.head(0, 1, scale=float("nan")), "finite in float32"),
    (lambda: Edit.resid(0, 0, ["a"] * 48), "real numbers"),
    (lambda: Edit.resid(0, 0, np.ones(48) * 1j), "real numbers"),
    (lambda: Edit.resid(0, 0, np.full(48, np.nan)), "non-finite value at index 0"),
    (lambda: Edit.resid(0, 0, np.full(48, 1e39)), "non-finite value at index 0"),
])
def test_edit_constructors_refuse_what_is_not_a_number(make, message):
    with pytest.raises(minigpt2.InputError, match=message):
        make()


def test_resumed_pass_arguments_are_checked(model):
    ids = REF["ids"]
    resid = model.run(ids).resid_pre[2]
    for start, r, message in [(-1, resid, "start must be a block 0..3"), (4, resid, "start must be a block 0..3"),
                              (2, None, "needs resid"), (2, resid[:3], "got shape"),
                              (2, np.full_like(resid, np.nan), "NaN or Inf")]:
        with pytest.raises(minigpt2.InputError, match=message):
            model.logits(ids, start=start, resid=r)
    with pytest.raises(minigpt2.InputError, match="an edit at layer 1 cannot apply to a pass resumed at block 2"):
        model.logits(ids, edits=[Edit.neuron(1, 0)], start=2, resid=resid)
    # a pass resumed at L is the unembedding of the given residual, patches at L applied
    final = model.run(ids).resid_pre[3]
    np.testing.assert_allclose(model.logits(ids, start=3, resid=final), REF["base_logits"], rtol=1e-4, atol=1e-4)


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


def test_of_two_patches_of_one_row_the_later_wins(model):
    ids = REF["ids"]
    edits = [Edit.resid(2, 4, np.zeros(48)), Edit.resid(2, 4, REF["patch_vector"])]
    np.testing.assert_allclose(model.run(ids, edits=edits).logits, REF["resid_patch_logits"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.logits(ids, edits=edits), REF["resid_patch_logits"], rtol=1e-4, atol=1e-4)
    d = model.run(ids, edits=edits).decompose(3, 4)
    np.testing.assert_array_equal(d.vectors[0], REF["patch_vector"])


def test_a_patch_at_the_final_layer_is_its_own_row_and_the_logits_read_it(model):
    """resid_pre[L] patched: that row's logits are ln_f(vector) W_E^T, in float64 from the raw weights."""
    from .conftest import _ln
    ids, v, p = REF["ids"], REF["patch_vector"].astype(np.float64), model.params
    tr = model.run(ids, edits=[Edit.resid(3, 4, REF["patch_vector"])])
    want = _ln(v, p.lnf_w, p.lnf_b, 1e-5) @ p.W_E.T.astype(np.float64)
    np.testing.assert_allclose(tr.logits[4], want, rtol=1e-4, atol=1e-4)
    d = tr.decompose(3, 4)
    assert len(d) == 1 and d.labels == ["resid_pre[3] patched"] and d.max_abs_error() == 0
