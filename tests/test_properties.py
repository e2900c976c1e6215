"""Hypothesis properties of the traced forward pass on random tiny configs and ids."""
import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from .conftest import _ln, random_model, reference_forward, tiny_config


@st.composite
def model_and_ids(draw):
    cfg = tiny_config(L=draw(st.integers(1, 3)), H=draw(st.integers(1, 4)), e=draw(st.sampled_from([2, 4, 8])),
                      m=draw(st.integers(4, 24)), V=draw(st.integers(8, 50)), n_ctx=12)
    model, raw = random_model(cfg, seed=draw(st.integers(0, 2**16)), scale=draw(st.sampled_from([0.3, 1.0, 2.0])))
    ids = np.array(draw(st.lists(st.integers(0, cfg.d_vocab - 1), min_size=1, max_size=cfg.n_ctx)))
    return model, raw, ids


SETTINGS = settings(max_examples=40, deadline=None)


def close(ours, ref, rtol=2e-4):
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=rtol * scale)


@SETTINGS
@given(model_and_ids())
def test_matches_independent_float64_reference(case):
    model, raw, ids = case
    tr, ref = model.run(ids), reference_forward(raw, model.cfg, ids)
    close(tr.logits, ref["logits"])
    close(tr.resid_pre, ref["resid_pre"])
    close(tr.attn, ref["attn"])
    close(tr.mlp_acts, ref["mlp_acts"])


@SETTINGS
@given(model_and_ids(), st.integers(1, 5))
def test_attention_in_small_query_blocks_matches_the_reference(case, block):
    """The forward pass computes attention in blocks of query rows; make several blocks happen."""
    import minigpt2.forward as fwd
    model, raw, ids = case
    old, fwd.BLOCK = fwd.BLOCK, block
    try:
        tr = model.run(ids)
        plain = model.logits(ids)
    finally:
        fwd.BLOCK = old
    ref = reference_forward(raw, model.cfg, ids)
    close(tr.attn, ref["attn"])
    close(tr.logits, ref["logits"])
    close(plain, ref["logits"])


@SETTINGS
@given(model_and_ids(), st.data())
def test_decomposition_sums_to_resid_pre_at_every_layer_and_position(case, data):
    model, _, ids = case
    tr = model.run(ids)
    for layer in range(model.cfg.n_layers + 1):
        pos = data.draw(st.integers(0, len(ids) - 1))
        d = tr.decompose(layer, pos)
        close(d.total(), tr.resid_pre[layer, pos].astype(np.float64), rtol=1e-5)
        L_, H, S, m = layer, model.cfg.n_heads, pos + 1, model.cfg.d_mlp
        assert len(d) == 2 + L_ * (H * S + 1 + m + 1)
        if layer:  # the message rows of head 0-0 carry that head's attention from pos to each source
            rows = (d.kind == "message") & (d.head == 0) & (d.layer_of == 0)
            np.testing.assert_array_equal(d.source[rows], np.arange(S))
            np.testing.assert_array_equal(d.weight[rows], tr.attn[0, 0, pos, :S])


@SETTINGS
@given(model_and_ids())
def test_scores_rebuilt_from_patterns_equal_attn(case):
    model, _, ids = case
    tr = model.run(ids)
    T = len(ids)
    scores = np.einsum("ltd,lhsd->lhts", tr.ln1.astype(np.float64), tr.patterns) + tr.pattern_bias[:, :, None, :]
    scores = np.where(np.tril(np.ones((T, T), bool)), scores, -np.inf)
    a = np.exp(scores - scores.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    close(a, tr.attn)


@SETTINGS
@given(model_and_ids())
def test_attention_output_is_attention_weighted_messages_plus_b_O(case):
    model, _, ids = case
    tr = model.run(ids)
    out = np.einsum("lhts,lhsd->ltd", tr.attn.astype(np.float64), tr.messages) + model.params.b_O[:, None, :]
    close(out, tr.attn_out)
    close(tr.resid_pre[:-1] + tr.attn_out, tr.resid_mid)


@SETTINGS
@given(model_and_ids(), st.data())
def test_changing_a_later_token_never_changes_earlier_positions(case, data):
    model, _, ids = case
    assume(len(ids) >= 2)
    j = data.draw(st.integers(1, len(ids) - 1))
    other = ids.copy()
    other[j:] = (ids[j:] + data.draw(st.integers(1, model.cfg.d_vocab - 1))) % model.cfg.d_vocab
    a, b = model.run(ids), model.run(other)
    np.testing.assert_array_equal(a.logits[:j], b.logits[:j])
    np.testing.assert_array_equal(a.resid_pre[:, :j], b.resid_pre[:, :j])
    np.testing.assert_array_equal(a.attn[:, :, :j, :j], b.attn[:, :, :j, :j])
    np.testing.assert_array_equal(a.patterns[:, :, :j], b.patterns[:, :, :j])
    assert (a.attn[:, :, np.triu_indices(len(ids), 1)[0], np.triu_indices(len(ids), 1)[1]] == 0).all()


@SETTINGS
@given(model_and_ids(), st.data())
def test_merged_matrices_agree_with_per_token_vectors(case, data):
    model, raw, ids = case
    tr = model.run(ids)
    cfg = model.cfg
    l, h = data.draw(st.integers(0, cfg.n_layers - 1)), data.draw(st.integers(0, cfg.n_heads - 1))
    D, e = cfg.d_model, cfg.d_head
    W_P, W_M = model.pattern_matrix(l, h), model.message_matrix(l, h)
    assert W_P.shape == W_M.shape == (D, D)
    for W in (W_P, W_M):  # rank d_head: singular values past e are float32 rounding only
        sv = np.linalg.svd(W.astype(np.float64), compute_uv=False)
        assert (sv[e:] <= 1e-5 * sv[0]).all()
    # independent bias terms straight from the HF-layout tensors
    b = raw[f"h.{l}.attn.c_attn.bias"].astype(np.float64)
    b_K, b_V = b[D + h * e:D + (h + 1) * e], b[2 * D + h * e:2 * D + (h + 1) * e]
    W_Q = raw[f"h.{l}.attn.c_attn.weight"][:, h * e:(h + 1) * e].astype(np.float64)
    W_O = raw[f"h.{l}.attn.c_proj.weight"][h * e:(h + 1) * e].astype(np.float64)
    x = tr.ln1[l].astype(np.float64)
    close(x @ W_P.T + b_K @ W_Q.T / np.sqrt(e), tr.patterns[l, h])
    close(x @ W_M + b_V @ W_O, tr.messages[l, h])
    # and the score identity from the docstring: x~_q W_P x~_k^T + pattern-bias terms
    score = x @ W_P @ x.T + (x @ W_Q @ b_K / np.sqrt(e))[:, None] + tr.pattern_bias[l, h][None, :]
    q = x @ W_Q + b[h * e:(h + 1) * e]
    k = x @ raw[f"h.{l}.attn.c_attn.weight"][:, D + h * e:D + (h + 1) * e] + b_K
    close(score, q @ k.T / np.sqrt(e))


@SETTINGS
@given(model_and_ids())
def test_lean_trace_expands_exactly_what_the_forward_pass_used(case):
    """patterns, messages and mlp_pre (rebuilt on access from keys, values and ln2), the Gram-matrix norms and
    the greedy predictions, each against float64 values computed here from the HF-layout tensors and the
    float64 reference forward pass."""
    model, raw, ids = case
    tr, ref = model.run(ids), reference_forward(raw, model.cfg, ids)
    cfg = model.cfg
    D, H, e, eps = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.layer_norm_eps
    f = {k: v.astype(np.float64) for k, v in raw.items()}
    for l in range(cfg.n_layers):
        w = lambda n: f[f"h.{l}.{n}"]  # noqa: E731
        x = _ln(ref["resid_pre"][l], w("ln_1.weight"), w("ln_1.bias"), eps)                  # [T, D]
        for h in range(H):
            cols = lambda i: slice(i * D + h * e, i * D + (h + 1) * e)  # noqa: E731  q, k, v of head h
            k = x @ w("attn.c_attn.weight")[:, cols(1)] + w("attn.c_attn.bias")[cols(1)]
            v = x @ w("attn.c_attn.weight")[:, cols(2)] + w("attn.c_attn.bias")[cols(2)]
            pat = k @ w("attn.c_attn.weight")[:, cols(0)].T / np.sqrt(e)
            msg = v @ w("attn.c_proj.weight")[h * e:(h + 1) * e]
            close(pat, tr.patterns[l, h])
            close(msg, tr.messages[l, h])
            close(np.linalg.norm(pat, axis=-1), tr.pattern_norms()[l, h])
            close(np.linalg.norm(msg, axis=-1), tr.message_norms()[l, h])
        mid = ref["resid_pre"][l + 1] - ref["mlp_acts"][l] @ w("mlp.c_proj.weight") - w("mlp.c_proj.bias")
        u = _ln(mid, w("ln_2.weight"), w("ln_2.bias"), eps) @ w("mlp.c_fc.weight") + w("mlp.c_fc.bias")
        close(u, tr.mlp_pre[l])
    top2 = np.sort(ref["logits"], axis=-1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3                       # positions without a float near-tie
    np.testing.assert_array_equal(tr.predicted[clear], np.argmax(ref["logits"], axis=-1)[clear])