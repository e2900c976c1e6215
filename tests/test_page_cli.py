"""What the command line says about itself (issue 18 items 7 and 10): random weights are marked in config.json
and said in every printout; a long prompt's printout is a summary; the Report line counts every file; long
jobs estimate their time and print progress lines without a terminal; analyze --help shows the essay's form."""
import io
import json
import re

import pytest

import minigpt2
from analysis.cli import main
from minigpt2.config import RANDOM_KEY, GPT2Config

from .conftest import FIXTURES

NOTE = "minigpt2: note: RANDOM WEIGHTS (made by make-checkpoint): the words mean nothing"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, gpt2_bpe_files):
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import KNOWN_CONFIGS
    return make_checkpoint(KNOWN_CONFIGS["tiny"], tmp_path_factory.mktemp("tiny"), seed=3)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGPT2_CACHE", str(tmp_path / "cache"))


def test_make_checkpoint_marks_its_weights_and_loading_reads_the_mark(tiny_dir):
    hf = json.loads((tiny_dir / "config.json").read_text())
    assert hf[RANDOM_KEY] is True                              # a key transformers' GPT2Config keeps, unused
    assert minigpt2.load(tiny_dir).cfg.random_weights
    assert not minigpt2.load(FIXTURES / "tiny-hub").cfg.random_weights        # a real export has no mark
    for v in ("true", 1, None):                                # only JSON true marks
        assert not GPT2Config.from_hf({**hf, RANDOM_KEY: v}).random_weights
    plain = GPT2Config.from_hf({k: v for k, v in hf.items() if k != RANDOM_KEY})
    assert "random" not in plain.describe()                    # the caches' keys of unmarked models stay as they were


def test_a_model_is_one_line_saying_whether_its_weights_are_random(tiny_dir):
    r = repr(minigpt2.load(tiny_dir))
    assert "\n" not in r and "2 layers x 4 heads" in r and "d_model 64" in r and "RANDOM weights" in r
    assert "RANDOM" not in repr(minigpt2.load(FIXTURES / "tiny-hub"))
    from analysis import analyze
    rep = analyze(minigpt2.load(tiny_dir), "hi there", k=3, progress=False)
    assert repr(rep).endswith("; RANDOM weights (make-checkpoint): the words mean nothing>") and rep.random_weights


def test_generate_and_analyze_say_random_weights_after_their_output(tiny_dir, tmp_path, capsys):
    assert main(["generate", "ab", "-n", "2", "--model", str(tiny_dir)]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [NOTE] and NOTE not in out
    assert main(["generate", "ab", "-n", "2", "--model", str(FIXTURES / "tiny-hub")]) == 0
    assert "RANDOM" not in capsys.readouterr().err
    assert main(["analyze", "hi", "--model", str(tiny_dir), "--out", str(tmp_path / "r"), "--position", "9"]) == 1
    assert capsys.readouterr().err.count("\n") == 1            # an error stays one line


def test_analyze_help_shows_the_essays_form(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    assert '"<|endoftext|> The baseball player hit a home run"' in capsys.readouterr().out


def test_a_long_prompt_prints_a_summary_and_the_report_line_counts_every_file(tiny_dir, tmp_path, capsys):
    text = " ".join(["the clocks were striking thirteen"] * 20)         # 101 tokens with BOS
    assert main(["analyze", text, "--model", str(tiny_dir), "--out", str(tmp_path / "r"), "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    model = minigpt2.load(tiny_dir)
    T = len(model.encode(text))
    assert T == 101 and len(lines) < 40                        # not 2 T lines
    assert f"... ({T - 10} more: the column names of evolution.csv)" in lines
    assert f"... ({T - 10} more: predictions.csv and the page's Predictions tab)" in lines
    with open(tmp_path / "r" / "predictions.csv", encoding="utf-8") as f:
        import csv
        rows = list(csv.DictReader(f))
    bars = [ln for ln in lines if ln.endswith("|")]
    assert bars == [f"{r['prefix']}|{r['predicted']}|" for r in rows[:5] + rows[-5:]]
    written = sorted(p.name for p in (tmp_path / "r").iterdir() if p.name not in ("index.html", "minigpt2-report.json"))
    report = next(ln for ln in lines if ln.startswith("Report: "))
    n_csv = int(re.search(r"\+ (\d+) CSV files", report).group(1))
    assert "mlp_acts.npy" in written and "and mlp_acts.npy" in report
    assert n_csv == len([n for n in written if n.endswith(".csv")]) and n_csv + 1 == len(written)
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")        # the head view, beyond 64 tokens:
    heads = page[page.index('<div class="panel" id="p-attended">'):page.index('<div class="panel" id="p-neurons">')]
    rows = re.findall(r"<tr>(<td.*?)</tr>", heads)                            # source, pattern, message and the
    assert len(rows) >= T and {r.count("<td") for r in rows} == {5}           #   two summaries: no query columns


def test_long_jobs_estimate_their_time_then_print_a_line_every_tenth(monkeypatch):
    from minigpt2 import progress
    clock = iter(range(0, 1000, 2))                            # each item takes 2 s
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()
    assert list(progress.steps(list(range(40)), "total effects", "ablation", out=out)) == list(range(40))
    lines = out.getvalue().splitlines()
    assert lines[0] == "total effects: 40 ablations, about 80 s (from the first)"
    assert lines[-1] == "total effects: 40 of 40 ablations (100%), 80 s, about 0 s left"
    assert [int(re.search(r"(\d+)%", ln).group(1)) for ln in lines[1:]] == list(range(10, 101, 10))


def test_effects_report_progress_on_stderr_without_a_terminal(tiny_dir, tmp_path, capsys):
    assert main(["analyze", "<|endoftext|> The baseball player", "--model", str(tiny_dir), "--out",
                 str(tmp_path / "r"), "-k", "3", "--effects"]) == 0
    err = capsys.readouterr().err.splitlines()
    n = 2 * 4 + min(256, 2 * 256)                              # every head and the exact neurons
    assert err[0] == f"total effects: {n} ablations, about " + err[0].split("about ")[1]
    assert err[-2].startswith(f"total effects: {n} of {n} ablations (100%)") and err[-1] == NOTE
    assert 5 <= len(err) <= 13
