"""Parity with Hugging Face transformers (committed fixtures from tests/fixtures/make_reference.py)."""
import numpy as np
import pytest

import minigpt2
from minigpt2.layers import layer_norm

from .conftest import FIXTURES

# Tolerance: both sides are float32 but sum in different orders (OpenBLAS vs torch kernels), which
# moves each result by a few ulps (~1e-7 relative) per layer. 1e-4 relative to the largest magnitude
# leaves two orders of margin while any real bug (a wrong bias, transposed head, wrong eps) is >1e-2.
RTOL = 1e-4


def rel_err(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module", params=["tiny-hub", "tiny-saved"])
def model(request):
    return minigpt2.load(FIXTURES / request.param)


@pytest.mark.parametrize("seq", ["short", "full"])
def test_logits_hidden_states_attentions_match_hf(model, reference, seq):
    ids = reference[f"{seq}_ids"]
    trace = model.run(ids)
    L = model.cfg.n_layers
    hs = reference[f"{seq}_hidden_states"]
    assert rel_err(trace.logits, reference[f"{seq}_logits"]) < RTOL
    assert rel_err(model.logits(ids), reference[f"{seq}_logits"]) < RTOL
    assert rel_err(trace.resid_pre[:L], hs[:L]) < RTOL
    # HF's last hidden state has ln_f applied
    p = model.params
    assert rel_err(layer_norm(trace.resid_pre[L], p.lnf_w, p.lnf_b, model.cfg.layer_norm_eps), hs[L]) < RTOL
    np.testing.assert_allclose(trace.attn, reference[f"{seq}_attentions"], atol=RTOL)  # probabilities: absolute
    assert rel_err(trace.mlp_acts, reference[f"{seq}_mlp_acts"]) < RTOL


def test_attention_is_not_uniform_so_the_fixture_can_catch_bugs(reference):
    a = reference["full_attentions"]
    assert a.max() > 0.9 and a[:, :, -1].min() < 1e-3


def test_both_layouts_give_identical_params():
    a = minigpt2.load(FIXTURES / "tiny-hub").params
    b = minigpt2.load(FIXTURES / "tiny-saved").params
    for name in a.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_per_head_split_matches_hf_layout():
    """W_Q[l, h] is columns h*e:(h+1)*e of the q third of c_attn; W_O[l, h] is rows h*e:(h+1)*e of c_proj."""
    from safetensors.numpy import load_file

    raw = load_file(str(FIXTURES / "tiny-hub" / "model.safetensors"))
    m = minigpt2.load(FIXTURES / "tiny-hub")
    D, e = m.cfg.d_model, m.cfg.d_head
    l, h = 1, 2
    w, b = raw[f"h.{l}.attn.c_attn.weight"], raw[f"h.{l}.attn.c_attn.bias"]
    np.testing.assert_array_equal(m.params.W_Q[l, h], w[:, h * e:(h + 1) * e])
    np.testing.assert_array_equal(m.params.W_K[l, h], w[:, D + h * e:D + (h + 1) * e])
    np.testing.assert_array_equal(m.params.W_V[l, h], w[:, 2 * D + h * e:2 * D + (h + 1) * e])
    np.testing.assert_array_equal(m.params.b_K[l, h], b[D + h * e:D + (h + 1) * e])
    np.testing.assert_array_equal(m.params.W_O[l, h], raw[f"h.{l}.attn.c_proj.weight"][h * e:(h + 1) * e])
    np.testing.assert_array_equal(m.params.W_in[l], raw[f"h.{l}.mlp.c_fc.weight"])


def test_attention_on_0_and_prediction_score_against_hf(reference):
    """Trace.attention_on_0: each head's mean HF attention on key 0 over queries 1..T-1 (1 for one token);
    Trace.prediction_score: HF's argmax at t equal to the token at t + 1, over T - 1 positions."""
    m = minigpt2.load(FIXTURES / "tiny-hub")
    ids = reference["full_ids"]
    tr = m.run(ids)
    a = reference["full_attentions"]
    np.testing.assert_allclose(tr.attention_on_0(), a[:, :, 1:, 0].mean(axis=2), atol=1e-5)
    assert (m.run(ids[:1]).attention_on_0() == 1).all()
    hf_pred = reference["full_logits"].argmax(-1)
    assert tr.prediction_score() == (int((hf_pred[:-1] == ids[1:]).sum()), len(ids) - 1)
