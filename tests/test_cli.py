"""The console script: generate, make-checkpoint, and one-line errors."""
import json
import subprocess
import sys

import minigpt2
from analysis.cli import main

from .conftest import FIXTURES


def test_generate_prints_prompt_and_continuation(capsys):
    assert main(["generate", "ab", "-n", "3", "--model", str(FIXTURES / "tiny-hub")]) == 0
    m = minigpt2.load(FIXTURES / "tiny-hub")
    expected = m.decode(m.generate(m.encode("ab"), 3)[1:])
    assert capsys.readouterr().out.strip() == expected.strip()


def test_bad_model_is_a_one_line_error(capsys, tmp_path):
    assert main(["generate", "x", "--model", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minigpt2: error:") and err.count("\n") == 1


def test_too_long_prompt_is_a_one_line_error(capsys):
    assert main(["generate", "x" * 40, "--model", str(FIXTURES / "tiny-hub")]) == 1
    assert "longer than the model's context" in capsys.readouterr().err


def test_make_checkpoint_writes_a_loadable_hub_layout(tmp_path, gpt2_bpe_files):
    out = tmp_path / "ck"
    r = subprocess.run([sys.executable, "-m", "analysis.cli", "make-checkpoint", "--like", "tiny", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "mean nothing" in r.stdout
    assert json.loads((out / "config.json").read_text())["n_layer"] == 2
    m = minigpt2.load(out)
    assert m.encode("The baseball player hit a home run").tolist() == [50256, 464, 9283, 2137, 2277, 257, 1363, 1057]
    # refuses to overwrite a non-empty directory
    assert main(["make-checkpoint", "--like", "tiny", "--out", str(out)]) == 1
