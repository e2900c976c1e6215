"""The essay's experiments: total effects, position-0 bias, context signatures, first tokens, ablate."""
import numpy as np
import pytest

import minigpt2
from analysis.cli import main
from analysis.views.effects import direct_effects, total_effects_table
from analysis.views.experiments import find_token, parse_head, position_scores, signature
from minigpt2 import Edit

from .conftest import FIXTURES, _ln, random_model, tiny_config


@pytest.fixture(scope="module")
def model():
    return minigpt2.load(FIXTURES / "tiny-hub")


IDS = np.array([299, 5, 77, 140, 3, 250, 18, 9])


def logp(logits, ids):
    x = logits.astype(np.float64)
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    return x[np.arange(len(ids) - 1), ids[1:]] - lse[:-1]


def test_resumed_edited_pass_equals_the_full_edited_run(model):
    tr = model.run(IDS)
    for e in (Edit.head(1, 2, 0.0), Edit.neuron(2, 7, 0.0), Edit.head(2, 3, 0.5, source=2)):
        full = model.run(IDS, edits=[e]).logits
        np.testing.assert_allclose(model.logits(IDS, edits=[e], start=e.layer, resid=tr.resid_pre[e.layer]), full,
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(model.logits(IDS, edits=[e]), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(minigpt2.InputError, match="an edit at layer 1 cannot apply to a pass resumed at block 2"):
        model.logits(IDS, edits=[Edit.head(1, 0)], start=2, resid=tr.resid_pre[2])


def test_total_and_direct_effects_against_independent_runs(model):
    tr = model.run(IDS)
    t = total_effects_table(model, tr, model.token_strings(IDS), n_neurons=5)
    assert len(t) == 3 * 4 + 3 * 80                                     # every head and every neuron
    cols = t.columns
    clean = logp(tr.logits, IDS)
    nxt = IDS[1:]
    for l, h in [(0, 1), (2, 3)]:
        r = dict(zip(cols, next(r for r in t.rows if r[0] == f"L{l} H{h}")))
        ablated = model.run(IDS, edits=[Edit.head(l, h, 0.0)]).logits
        assert r["total effect (log-prob)"] == pytest.approx((clean - logp(ablated, IDS)).sum(), abs=1e-4)
        t_ = np.arange(len(nxt))                                        # the logit drop: clean minus ablated
        want = (tr.logits[t_, nxt].astype(np.float64) - ablated[t_, nxt]).sum()
        assert r["total effect (logit)"] == pytest.approx(want, abs=1e-4)
        # direct effect from the decomposition: the head's rows, through ln_f, on each actual next token
        want = 0.0
        for pos in range(len(IDS) - 1):
            d = tr.decompose(3, pos)
            rows = (d.kind == "message") & (d.layer_of == l) & (d.head == h)
            c = d.vectors[rows].astype(np.float64).sum(0)
            x = tr.resid_pre[3, pos].astype(np.float64)
            std = np.sqrt(x.var() + 1e-5)
            want += ((c - c.mean()) / std) @ (model.params.lnf_w * model.params.W_E[IDS[pos + 1]])
        assert r["direct effect (logit)"] == pytest.approx(want, abs=1e-4)
    key = cols.index("total effect (log-prob)")
    exact = [abs(r[key]) for r in t.rows if r[key] is not None]
    assert exact == sorted(exact, reverse=True) and len(exact) == 12 + 5
    n = direct_effects(model, tr)["neuron"]
    pos_sum = sum(tr.mlp_acts[1, t_, 3] * ((model.params.W_out[1, 3] - model.params.W_out[1, 3].mean())
                                           / np.sqrt(tr.resid_pre[3, t_].astype(np.float64).var() + 1e-5))
                  @ (model.params.lnf_w * model.params.W_E[IDS[t_ + 1]]) for t_ in range(len(IDS) - 1))
    assert n[1, 3] == pytest.approx(pos_sum, abs=1e-4)


def fd_attribution(model, ids, edit, eps=1e-2):
    """d (sum of the next tokens' log-probs) / d scale at 1, by a central difference of two edited runs."""
    up, down = (logp(model.logits(ids, edits=[edit(1 + s)]), ids).sum() for s in (eps, -eps))
    return (up - down) / (2 * eps)


def test_attribution_column_and_the_exact_neurons_against_finite_differences(model):
    """Every component's attribution is a finite difference of its scale; the neurons ablated exactly are those
    of largest |attribution| (not the weakest, nor the old activation x norm pick)."""
    tr = model.run(IDS)
    t = total_effects_table(model, tr, model.token_strings(IDS), n_neurons=5)
    rows = {r[0]: dict(zip(t.columns, r)) for r in t.rows}
    fd_n = np.array([[fd_attribution(model, IDS, lambda s, l=l, n=n: Edit.neuron(l, n, s)) for n in range(80)]
                     for l in range(3)])
    fd_h = np.array([[fd_attribution(model, IDS, lambda s, l=l, h=h: Edit.head(l, h, s)) for h in range(4)]
                     for l in range(3)])
    got_n = np.array([[rows[f"L{l} N{n}"]["attribution (log-prob)"] for n in range(80)] for l in range(3)])
    got_h = np.array([[rows[f"L{l} H{h}"]["attribution (log-prob)"] for h in range(4)] for l in range(3)])
    np.testing.assert_allclose(got_n, fd_n, atol=2e-3, rtol=1e-2)
    np.testing.assert_allclose(got_h, fd_h, atol=2e-3, rtol=1e-2)
    exact = {(r["layer"], r["neuron"]) for r in rows.values()
             if r["kind"] == "neuron" and r["total effect (log-prob)"] is not None}
    assert len(exact) == 5
    size = np.abs(fd_n)
    chosen = min(size[l, n] for l, n in exact)
    others = max(size[l, n] for l in range(3) for n in range(80) if (l, n) not in exact)
    assert chosen >= others - 2e-3                                       # the strongest five, up to FD noise
    assert all(r["total effect (log-prob)"] is not None for r in rows.values() if r["kind"] == "head")
    total = [r for r in t.rows if r[5] is not None]
    assert t.rows[: len(total)] == total                                 # exact rows first, by |total|
    r = np.corrcoef([x[5] for x in total], [x[6] for x in total])[0, 1]     # attribution vs total, exact rows
    assert f"r = {r:.3f}" in t.note


def test_position_scores_are_the_attention_of_a_prompt_of_pure_position():
    """With every token embedding zero, layer 0 sees position embeddings alone: its attention must be the
    causal softmax of position_scores, computed here by hand from the raw HF tensors."""
    cfg = tiny_config(L=2, H=3, e=4, m=12, V=20, n_ctx=9)
    model, t = random_model(cfg, seed=5, scale=0.5)
    model.params.W_E[:] = 0
    T = 7
    tr = model.run(np.arange(T) % cfg.d_vocab)
    s = position_scores(model, T)
    x = _ln(t["wpe.weight"][:T].astype(np.float64), t["h.0.ln_1.weight"], t["h.0.ln_1.bias"], 1e-5)
    qkv = x @ t["h.0.attn.c_attn.weight"] + t["h.0.attn.c_attn.bias"]
    D, e = cfg.d_model, cfg.d_head
    for h in range(cfg.n_heads):
        q, k = qkv[:, h * e:(h + 1) * e], qkv[:, D + h * e:D + (h + 1) * e]
        by_hand = q @ k.T / np.sqrt(e)
        np.testing.assert_allclose(s[h], by_hand, rtol=1e-4, atol=1e-5)
        masked = np.where(np.tril(np.ones((T, T))) > 0, by_hand, -np.inf)
        a = np.exp(masked - masked.max(1, keepdims=True))
        np.testing.assert_allclose(tr.attn[0, h], a / a.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_signature_is_the_cosine_of_message_and_later_patterns(model):
    tr = model.run(IDS)
    cos = signature(tr, 0, 2, 4)
    assert np.isnan(cos[0]).all() and not np.isnan(cos[1:]).any()
    m, p = tr.messages[0, 2, 4].astype(np.float64), tr.patterns[2, 1, 4].astype(np.float64)
    assert cos[2, 1] == pytest.approx(m @ p / np.linalg.norm(m) / np.linalg.norm(p), abs=1e-6)
    assert find_token([" a", " home", "run"], "home") == 1
    with pytest.raises(minigpt2.InputError, match="no token 'x' in the prompt"):
        find_token(["a"], "x")


def test_parse_head_and_neuron_errors(model):
    assert parse_head("1-2:3", model.cfg) == (1, 2, 3)
    with pytest.raises(minigpt2.InputError, match=r"head 1-9: head 9 is outside 0\.\.3"):
        parse_head("1-9", model.cfg)
    with pytest.raises(minigpt2.InputError, match="write LAYER-HEAD"):
        parse_head("L1H2", model.cfg)


def test_ablate_cli_prints_before_and_after(capsys):
    m = str(FIXTURES / "tiny-hub")
    assert main(["ablate", "hello", "--model", m, "--head", "2-1", "--neuron", "1-5"]) == 0
    out = capsys.readouterr().out
    model = minigpt2.load(m)
    ids = model.encode("hello")
    after = model.logits(ids, edits=[Edit.neuron(1, 5), Edit.head(2, 1)]).argmax(-1)
    assert out.startswith("Edits: neuron 1-5 x0; head 2-1 x0\n")
    assert f"-> |{model.token_strings([after[3]])[0]}|" in out.splitlines()[5]
    assert main(["ablate", "hello", "--model", m]) == 1
    assert "name something to ablate" in capsys.readouterr().err


def test_compare_first_tokens(capsys):
    m = str(FIXTURES / "tiny-hub")
    assert main(["compare", "abc", "--model", m, "--first", "<|endoftext|>", "--first", "none",
                 "--first", "\n"]) == 0
    out = capsys.readouterr().out
    model = minigpt2.load(m)
    for label, ids in [("first '<|endoftext|>'", [299, 97, 98, 99]), ("first nothing", [97, 98, 99]),
                       ("first '\\n'", [10, 97, 98, 99])]:
        pred = model.logits(ids).argmax(-1)
        ok = int((pred[:-1] == np.array(ids[1:])).sum())
        assert f"== {label}: predicts {ok} out of {len(ids) - 1} tokens correctly" in out
    assert "\\nabc|" in out and "Side by side:" in out
