"""minigpt2 patch, tune-bos and --first-vector, through the command line: the numbers against independent
runs, the files they write, and one line for each bad input."""
import csv

import numpy as np
import pytest

import minigpt2
from analysis.cli import main
from analysis.views.patching import patch
from minigpt2 import Edit

from .conftest import FIXTURES

pytestmark = pytest.mark.usefixtures("private_cache")
MODEL = str(FIXTURES / "tiny-hub")
# One token differs, at position 3 (BOS first), and the two runs predict different last tokens.
CLEAN, CORRUPT = "abcde fgh", "abRde fgh"


@pytest.fixture(scope="module")
def model():
    return minigpt2.load(MODEL)


def cli(argv, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def logp_last(logits, tok):
    z = logits[-1].astype(np.float64)
    return z[tok] - z.max() - np.log(np.exp(z - z.max()).sum())


def test_patching_against_full_edited_runs_and_the_whole_gap(model):
    """Patching the one differing token's embedding restores the clean run exactly (the whole gap); every
    position before it changes nothing; each value is a full (not resumed) edited run's."""
    a, b = model.encode(CLEAN), model.encode(CORRUPT)
    diff = int(np.flatnonzero(a != b)[0])
    r = patch(model, a, b)
    clean, corrupt = model.run(a), model.run(b)
    answer = int(np.argmax(clean.logits[-1]))
    assert r.answer == answer != int(np.argmax(corrupt.logits[-1]))
    assert r.clean == pytest.approx(logp_last(clean.logits, answer), abs=1e-5)
    assert r.corrupt == pytest.approx(logp_last(corrupt.logits, answer), abs=1e-5)
    assert r.resid[0, diff] == pytest.approx(r.clean - r.corrupt, abs=1e-4)       # the whole gap
    assert np.all(r.resid[:, :diff] == 0) and np.all(r.resid[0, diff + 1:] == 0)   # nothing differs there
    for l, t in [(1, diff), (2, len(a) - 1), (1, len(a) - 2)]:
        full = model.run(b, edits=[Edit.resid(l, t, clean.resid_pre[l, t])]).logits
        assert r.resid[l, t] == pytest.approx(logp_last(full, answer) - r.corrupt, abs=1e-4)
    z = clean.head_outputs()
    for l, h in [(0, 1), (2, 3)]:
        full = model.run(b, edits=[Edit.head_z(l, h, z[l][h])]).logits
        assert r.heads[l, h] == pytest.approx(logp_last(full, answer) - r.corrupt, abs=1e-4)
    assert r.resid_estimate.shape == r.resid.shape and r.heads_estimate.shape == r.heads.shape
    assert np.all(r.resid_estimate[:, :diff] == 0)                                   # no difference, no estimate


def test_patch_command_writes_the_figure_and_both_csvs(model, tmp_path, capsys):
    out = tmp_path / "p"
    code, stdout, err = cli(["patch", CLEAN, CORRUPT, "--model", MODEL, "--out", str(out)], capsys)
    assert code == 0, err
    rows = list(csv.DictReader((out / "patch.csv").open()))
    L, T = model.cfg.n_layers, len(model.encode(CLEAN))
    assert len(rows) == L * T and list(rows[0]) == ["layer", "pos", "clean token", "corrupt token", "effect",
                                                    "estimate"]
    r = patch(model, model.encode(CLEAN), model.encode(CORRUPT))
    got = np.array([float(x["effect"]) for x in rows]).reshape(L, T)
    np.testing.assert_allclose(got, r.resid, atol=1e-6)
    heads = list(csv.DictReader((out / "patch_heads.csv").open()))
    assert len(heads) == L * model.cfg.n_heads
    page = (out / "index.html").read_text()
    assert page.count("<svg") == 4 and "How to read it" in page and "<script" not in page
    assert "answer" in stdout and "Report:" in stdout


@pytest.mark.parametrize("argv, message", [
    (["patch", "ab", "abc"], "CLEAN is 3 tokens and CORRUPT 4: patching pairs their positions"),
    (["patch", "", "ab"], "CLEAN"),
])
def test_patch_bad_input_is_one_line(argv, message, tmp_path, capsys):
    code, _, err = cli(argv + ["--model", MODEL, "--out", str(tmp_path / "p")], capsys)
    assert code == 1 and message in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = np.random.default_rng(1)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"]
    f = tmp_path_factory.mktemp("text") / "text.txt"
    f.write_text(" ".join(rng.choice(words, 400)))
    return f


def test_tune_bos_writes_a_usable_deterministic_vector(model, text_file, tmp_path, capsys):
    argv = ["tune-bos", str(text_file), "--model", MODEL, "--steps", "12", "--seq-len", "16", "--seed", "4"]
    code, out, err = cli(argv + ["--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert cli(argv + ["--out", str(tmp_path / "b")], capsys)[0] == 0
    a, b = (np.load(tmp_path / d / "bos.npy", allow_pickle=False) for d in "ab")
    assert a.dtype == np.float32 and a.shape == (model.cfg.d_model,) and np.array_equal(a, b)
    start = model.params.W_E[model.cfg.bos_token_id] + model.params.W_pos[0]
    assert not np.array_equal(a, start)                                         # it moved
    curve = list(csv.DictReader((tmp_path / "a" / "tune-bos.csv").open()))
    assert [int(r["step"]) for r in curve] == list(range(13))
    # the printed held-out loss with the vector first is its loss, found here from the logits
    shown = {line.split(" first:")[0]: float(line.split(":")[-1]) for line in out.splitlines() if " first:" in line}
    assert set(shown) == {"held-out loss with <|endoftext|>", "held-out loss with tuned vector",
                          "held-out loss with nothing"}
    assert min(float(r["held-out loss"]) for r in curve if r["held-out loss"]) == pytest.approx(
        shown["held-out loss with tuned vector"], abs=1e-4)
    page = (tmp_path / "a" / "index.html").read_text()
    assert "<polyline" in page and "Attention on position 0" in page
    code, out, err = cli(["compare", "the cat sat on", "--model", MODEL, "--first-vector",
                          str(tmp_path / "a" / "bos.npy")], capsys)
    assert code == 0 and "first vector" in out
    ids = model.encode("the cat sat on")
    want = model.run(ids, edits=[Edit.resid(0, 0, a)])
    correct = int((want.predicted[:-1] == ids[1:]).sum())
    assert f"first vector {tmp_path / 'a' / 'bos.npy'}: {correct}/{len(ids) - 1}" in out


def test_analyze_with_a_first_vector_runs_the_patched_model(model, tmp_path, capsys):
    v = np.random.default_rng(0).normal(0, 1, model.cfg.d_model).astype(np.float32)
    np.save(tmp_path / "v.npy", v)
    code, _, err = cli(["analyze", "the cat sat", "--model", MODEL, "--first-vector", str(tmp_path / "v.npy"),
                        "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    ids = model.encode("the cat sat")
    want = model.run(ids, edits=[Edit.resid(0, 0, v)])
    rows = list(csv.DictReader((tmp_path / "r" / "predictions.csv").open()))
    assert [r["predicted"] for r in rows] == [model.token_strings([int(p)])[0] for p in want.predicted]


def test_a_diverging_tuning_stops_names_the_step_and_keeps_a_finite_vector(model, text_file, tmp_path, capsys,
                                                                          monkeypatch):
    import minigpt2.tune as tune
    real, calls = tune.window_loss, []

    def nan_after_a_while(model, window, first, grad=False):
        got = real(model, window, first, grad)
        if grad:
            calls.append(1)
            if len(calls) > 12:                                          # step 4 with batches of 4
                return float("nan"), got[1]
        return got
    monkeypatch.setattr(tune, "window_loss", nan_after_a_while)
    code, _, err = cli(["tune-bos", str(text_file), "--model", MODEL, "--steps", "10", "--seq-len", "16",
                        "--out", str(tmp_path / "d")], capsys)
    assert code == 1 and "diverged (not finite) at step 4" in err
    assert np.isfinite(np.load(tmp_path / "d" / "bos.npy")).all()


@pytest.mark.parametrize("make, extra, message", [
    (lambda d: (d / "bin.txt").write_bytes(b"ab\xffcd" * 40), [], "is not UTF-8 text (byte 0xff at offset 2)"),
    (lambda d: (d / "short.txt").write_text("the cat"), [], "makes 0 window(s) of 16 tokens"),
    (lambda d: (d / "ok.txt").write_text("the cat " * 100), ["--seq-len", "24"], "--seq-len is 2..23"),
])
def test_tune_bos_bad_input_is_one_line(make, extra, message, tmp_path, capsys):
    make(tmp_path)
    f = next(p for p in tmp_path.iterdir() if p.suffix == ".txt")
    code, _, err = cli(["tune-bos", str(f), "--model", MODEL, "--seq-len", "16", *extra, "--out",
                        str(tmp_path / "o")], capsys)
    assert code == 1 and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()                                         # nothing written


@pytest.mark.parametrize("content, message", [
    (b"the cat", "is not a .npy file"),
    (None, "holds float64 (3,): this model needs 48 floats"),
])
def test_a_bad_first_vector_is_one_line(content, message, tmp_path, capsys):
    f = tmp_path / "v.npy"
    if content is None:
        np.save(f, np.zeros(3))
    else:
        f.write_bytes(content)
    code, _, err = cli(["analyze", "hi", "--model", MODEL, "--first-vector", str(f), "--out", str(tmp_path / "r")],
                       capsys)
    assert code == 1 and message in err and err.count("\n") == 1


def test_analyze_effects_prints_the_correlation_of_attribution_and_exact_effects(tmp_path, capsys):
    code, out, err = cli(["analyze", "the cat sat on the mat", "--model", MODEL, "--effects", "--out",
                          str(tmp_path / "r")], capsys)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "r" / "effects.csv").open()))
    exact = [(float(r["total effect (log-prob)"]), float(r["attribution (log-prob)"]))
             for r in rows if r["total effect (log-prob)"]]
    r = np.corrcoef(np.array(exact).T)[0, 1]
    assert f"attribution vs exact ablation r = {r:.3f} over {len(exact)} components ({len(rows)} in" in out
