"""Each rule of the analysis against an independent reference (float64 written here, from the raw HF tensors):
the low-rank search's scores, the head cache's key, the stream rollup, the position-0 table, the BOS-neuron
rule behind compare, ablation log-probabilities. Each test stands for a mutation that once survived."""
from dataclasses import replace

import numpy as np
import pytest
from safetensors.numpy import load_file

import minigpt2
from analysis import analyze, build_vocab
from analysis.views import context
from analysis.views.experiments import ablation_table, position_tables, variant
from minigpt2 import Edit

from .conftest import FIXTURES, _ln, reference_forward

pytestmark = pytest.mark.usefixtures("private_cache")
IDS = np.array([299] + list(range(5, 24)))            # 20 tokens: the whole tiny context but 4


@pytest.fixture(scope="module")
def model():
    return minigpt2.load(FIXTURES / "tiny-hub")


@pytest.fixture(scope="module")
def raw():
    return {k: v.astype(np.float64) for k, v in load_file(str(FIXTURES / "tiny-hub" / "model.safetensors")).items()}


def top_cosines(vecs, space, k):
    """[n, k] the k best cosine similarities of each row of vecs against space's rows, float64, full sort."""
    s = space / np.linalg.norm(space, axis=1, keepdims=True)
    sims = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)) @ s.T
    return -np.sort(-sims, axis=1)[:, :k]


def scores(table, l, h):
    """The Scored column's scores of head (l, h), in position order: [T, k]."""
    col = table.columns.index("words (scores)")
    rows = sorted((r for r in table.rows if r[0] == l and r[1] == h), key=lambda r: r[2])
    return np.array([r[col][1] for r in rows])


def head_vectors(raw, cfg, ids, l, h):
    """(patterns [T, D], messages [T, D]) of head (l, h), from the reference forward pass's residuals."""
    f = reference_forward(raw, cfg, ids)
    D, e = cfg.d_model, cfg.d_head
    x = _ln(f["resid_pre"][l], raw[f"h.{l}.ln_1.weight"], raw[f"h.{l}.ln_1.bias"], 1e-5)
    w, b = raw[f"h.{l}.attn.c_attn.weight"], raw[f"h.{l}.attn.c_attn.bias"]
    q_w = w[:, h * e:(h + 1) * e]
    k = x @ w[:, D + h * e:D + (h + 1) * e] + b[D + h * e:D + (h + 1) * e]
    v = x @ w[:, 2 * D + h * e:2 * D + (h + 1) * e] + b[2 * D + h * e:2 * D + (h + 1) * e]
    return k @ q_w.T / np.sqrt(e), v @ raw[f"h.{l}.attn.c_proj.weight"][h * e:(h + 1) * e]


def test_low_rank_scores_are_the_cosines_not_only_the_words(model, raw, monkeypatch):
    """The low-rank path (keys / sqrt(e) against projected vocabularies) must give the patterns' and messages'
    cosines themselves: a key left unscaled by 1/sqrt(e) keeps every word and multiplies every score."""
    monkeypatch.setattr(context, "MIN_TOKENS", 8)
    rep = analyze(model, ids=IDS, k=3, progress=False)
    words = build_vocab(model, min_words=3).words                             # the report's vocabulary
    for l, h in [(0, 1), (2, 3)]:
        pat, msg = head_vectors(raw, model.cfg, IDS, l, h)
        ln1 = _ln(raw["wte.weight"][words], raw[f"h.{l}.ln_1.weight"], raw[f"h.{l}.ln_1.bias"], 1e-5)
        np.testing.assert_allclose(scores(rep["patterns"], l, h), top_cosines(pat, ln1, 3), atol=2e-5)
        unembed = raw["wte.weight"][words] * raw["ln_f.weight"]
        np.testing.assert_allclose(scores(rep["messages"], l, h), top_cosines(msg, unembed, 3), atol=2e-5)


def test_the_head_cache_follows_W_O(model, raw, monkeypatch):
    """Two models that differ only in W_O must not share projected vocabularies."""
    monkeypatch.setattr(context, "MIN_TOKENS", 8)
    analyze(model, ids=IDS, k=3, progress=False)                              # fills the cache
    rng = np.random.default_rng(0)
    W_O = model.params.W_O + rng.normal(0, 0.5, model.params.W_O.shape).astype(np.float32)
    other = minigpt2.Model(model.cfg, replace(model.params, W_O=W_O), model.tokenizer, source="W_O changed")
    rep = analyze(other, ids=IDS, k=3, progress=False)
    words = build_vocab(model, min_words=3).words                             # the report's vocabulary
    unembed = raw["wte.weight"][words] * raw["ln_f.weight"]
    l, h = 1, 2
    e = model.cfg.d_head
    raw_other = dict(raw)
    proj = raw[f"h.{l}.attn.c_proj.weight"].copy()
    proj[h * e:(h + 1) * e] = W_O[l, h]
    raw_other[f"h.{l}.attn.c_proj.weight"] = proj
    for i in range(model.cfg.n_layers):                                      # every layer's W_O, as the model's
        p = raw_other[f"h.{i}.attn.c_proj.weight"] = raw[f"h.{i}.attn.c_proj.weight"].copy()
        for j in range(model.cfg.n_heads):
            p[j * e:(j + 1) * e] = W_O[i, j]
    _, msg = head_vectors(raw_other, model.cfg, IDS, l, h)
    np.testing.assert_allclose(scores(rep["messages"], l, h), top_cosines(msg, unembed, 3), atol=2e-5)


def test_a_cache_file_copied_to_another_layers_path_is_refused(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(context, "MIN_TOKENS", 8)
    clean = analyze(model, ids=IDS, k=3, progress=False)
    folder = next((tmp_path / "cache").glob("heads-*"))
    (folder / "pattern-1.bin").write_bytes((folder / "pattern-0.bin").read_bytes())    # same shape, other key
    capsys.readouterr()
    again = analyze(model, ids=IDS, k=3, progress=False)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "pattern-1.bin" in err[0] and "fingerprint mismatch" in err[0]
    assert again["patterns"].rows == clean["patterns"].rows


def test_stream_rollup_against_the_blocks_of_a_float64_pass(model, raw):
    """Each block's direct effect on the predicted logit at the last position: its write (biases in: an MLP is
    its neurons plus b_out), centred, over ln_f's scale of the final residual, along lnf_w * W_E[token]."""
    rep = analyze(model, ids=IDS, k=3, progress=False)
    f = reference_forward(raw, model.cfg, IDS)
    x = f["resid_pre"][-1, -1]
    pred = int(np.argmax(f["logits"][-1]))
    w = raw["ln_f.weight"] * raw["wte.weight"][pred]

    def effect(c):
        return ((c - c.mean()) / np.sqrt(x.var() + 1e-5)) @ w

    got = {r[1]: r[2] for r in rep["stream_rollup"].rows}
    for l in range(model.cfg.n_layers):
        assert got[f"L{l} attention"] == pytest.approx(effect(f["attn_out"][l, -1]), abs=1e-4)
        assert got[f"L{l} MLP"] == pytest.approx(effect(f["mlp_out"][l, -1]), abs=1e-4)
    heads = {}                                                              # each head's output at the last position
    for l in range(model.cfg.n_layers):
        for h in range(model.cfg.n_heads):
            heads[f"L{l} H{h}"] = effect(f["attn"][l, h, -1] @ head_vectors(raw, model.cfg, IDS, l, h)[1])
    by_head = [(r[1], r[2]) for r in rep["stream_rollup"].rows if r[0] == "head"]
    assert [name for name, _ in by_head] == sorted(heads, key=lambda n: -abs(heads[n]))[:20]   # by |effect|
    assert [v for _, v in by_head] == pytest.approx([heads[n] for n, _ in by_head], abs=1e-4)
    b_out = sum(effect(raw[f"h.{l}.mlp.c_proj.bias"]) for l in range(model.cfg.n_layers))
    assert got["b_out"] == pytest.approx(b_out, abs=1e-4)
    T = len(IDS)
    assert got["token embedding"] == pytest.approx(effect(raw["wte.weight"][IDS[-1]]), abs=1e-4)
    assert got["position embedding"] == pytest.approx(effect(raw["wpe.weight"][T - 1]), abs=1e-4)


def test_position_0_table_is_a_causal_softmax_of_position_scores(model, raw):
    tr = model.run(IDS[:6])
    pos0, on0 = position_tables(model, tr, model.token_strings(tr.ids))
    D, e, T = model.cfg.d_model, model.cfg.d_head, 6
    x = _ln(raw["wpe.weight"][:T], raw["h.0.ln_1.weight"], raw["h.0.ln_1.bias"], 1e-5)
    qkv = x @ raw["h.0.attn.c_attn.weight"] + raw["h.0.attn.c_attn.bias"]
    for h in range(model.cfg.n_heads):
        s = qkv[:, h * e:(h + 1) * e] @ qkv[:, D + h * e:D + (h + 1) * e].T / np.sqrt(e)
        rows = [r[2:] for r in pos0.rows if r[0] == h]
        for t in range(T):
            a = np.exp(s[t, : t + 1] - s[t, : t + 1].max())
            np.testing.assert_allclose(rows[t][: t + 1], a / a.sum(), rtol=1e-5, atol=1e-7)
            assert rows[t][t + 1:] == [None] * (T - 1 - t)                   # no key after the query
    f = reference_forward(raw, model.cfg, IDS[:6])
    np.testing.assert_allclose([r[1:] for r in on0.rows], f["attn"][:, :, 1:, 0].mean(axis=2), atol=1e-5)


def test_compare_names_the_bos_neurons_of_the_rule(model):
    """A neuron made to fire at position 0 alone must be in compare's list (the rule: positive at 0, and at
    least 4x its largest |activation| anywhere else), with its activation there."""
    p, cfg = model.params, model.cfg
    v = np.zeros(cfg.d_model, np.float32)
    v[::2] = 30.0                                                          # a loud, fixed position-0 direction
    W_pos, W_in, b_in = p.W_pos.copy(), p.W_in.copy(), p.b_in.copy()
    W_pos[0] += v
    target = (v - v.mean()) / v.std()                                       # about LN2's input direction there
    W_in[0][:, 7] = 3 * target / np.sqrt(cfg.d_model) / np.abs(p.ln2_w[0]).mean()
    b_in[0, 7] = -3.0
    bos_model = minigpt2.Model(cfg, replace(p, W_pos=W_pos, W_in=W_in, b_in=b_in), model.tokenizer)
    ids = IDS[:8]
    acts = bos_model.run(ids).mlp_acts.astype(np.float64)
    first = acts[:, 0]
    rest = np.abs(acts[:, 1:]).max(axis=1)
    want = sorted(((l, n) for l in range(cfg.n_layers) for n in range(cfg.d_mlp)
                   if first[l, n] > 0 and rest[l, n] <= first[l, n] / 4), key=lambda ln: -first[ln])
    assert (0, 7) in want
    got = variant(bos_model, "x", ids).bos_neurons
    assert [name for name, _ in got] == [f"L{l} N{n}" for l, n in want[:5]]
    assert [a for _, a in got] == pytest.approx([first[ln] for ln in want[:5]], rel=1e-5)


def test_ablation_log_probs_before_and_after(model, raw):
    ids = IDS[:8]
    edits = [Edit.neuron(1, 3, 0.0), Edit.head(0, 2, 0.0)]
    t = ablation_table(model, ids, edits, model.token_strings(ids))

    def logp(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    before = logp(reference_forward(raw, model.cfg, ids)["logits"])
    after = logp(model.logits(ids, edits=edits).astype(np.float64))
    for r in t.rows[:-1]:
        r = dict(zip(t.columns, r))
        pos = r["pos"]
        assert r["log-prob before"] == pytest.approx(before[pos, ids[pos + 1]], abs=1e-4)
        assert r["log-prob after"] == pytest.approx(after[pos, ids[pos + 1]], abs=1e-4)
    assert not np.allclose(before, after, atol=1e-3)                          # the edits change something


def test_streams_every_position_against_the_blocks_of_a_float64_pass(model, raw):
    """The all-positions view (computed in the rank space, a layer at a time) against each block's write in a
    float64 pass, at every position, for the predicted and the actual next token."""
    rep = analyze(model, ids=IDS, k=3, progress=False)
    f = reference_forward(raw, model.cfg, IDS)
    rows = [dict(zip(rep["streams"].columns, r)) for r in rep["streams"].rows]
    for t in range(len(IDS)):
        x = f["resid_pre"][-1, t]
        toks = {"direct effect": int(np.argmax(f["logits"][t]))}
        if t + 1 < len(IDS):
            toks["direct effect (actual next)"] = int(IDS[t + 1])
        got = {r["component"]: r for r in rows if r["pos"] == t and r["by"] == "layer"}
        for col, tok in toks.items():
            w = raw["ln_f.weight"] * raw["wte.weight"][tok]
            for l in range(model.cfg.n_layers):
                for name, c in ((f"L{l} attention", f["attn_out"][l, t]), (f"L{l} MLP", f["mlp_out"][l, t])):
                    want = ((c - c.mean()) / np.sqrt(x.var() + 1e-5)) @ w
                    assert got[name][col] == pytest.approx(want, abs=1e-4), (t, name, col)


def test_a_subset_of_a_decomposition_reports_its_sum_and_the_rest_not_an_error(raw, model):
    tr = model.run(IDS[:8])
    d = tr.decompose(3, 7)
    sub = d.where(kind="message", layer=1, head=2)
    f = reference_forward(raw, model.cfg, IDS[:8])
    e = model.cfg.d_head
    a = f["attn"][1, 2, 7]                                                     # [S] the head's attention at 7
    x = _ln(f["resid_pre"][1], raw["h.1.ln_1.weight"], raw["h.1.ln_1.bias"], 1e-5)
    v = x @ raw["h.1.attn.c_attn.weight"][:, 2 * model.cfg.d_model + 2 * e: 2 * model.cfg.d_model + 3 * e] \
        + raw["h.1.attn.c_attn.bias"][2 * model.cfg.d_model + 2 * e: 2 * model.cfg.d_model + 3 * e]
    want = a @ (v @ raw["h.1.attn.c_proj.weight"][2 * e: 3 * e])                 # its messages, weighted
    np.testing.assert_allclose(sub.total(), want, atol=1e-4)
    np.testing.assert_allclose(sub.rest(), f["resid_pre"][3, 7] - want, atol=1e-4)
    assert "a subset: 8 of" in repr(sub) and "error" not in repr(sub)
    with pytest.raises(ValueError, match="subset"):
        sub.max_abs_error()
    assert "max error" in repr(d) and d.max_abs_error() < 1e-4 and d[:].complete and d.by("head").complete
