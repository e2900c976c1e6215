"""The real GPT-2 tokenizer, hub loading (offline error; opt-in online check) and generation."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minigpt2

from .conftest import FIXTURES, hub_online as _online

PROMPT = "The baseball player hit a home run"


def test_real_gpt2_tokenizer_encodes_the_essay_prompt(gpt2_tokenizer):
    ids = gpt2_tokenizer.encode(PROMPT, bos=True)
    assert ids.tolist() == [50256, 464, 9283, 2137, 2277, 257, 1363, 1057]
    assert gpt2_tokenizer.token_strings(ids) == ["<|endoftext|>", "The", " baseball", " player", " hit",
                                                 " a", " home", " run"]
    assert gpt2_tokenizer.decode(ids[1:]) == PROMPT
    assert gpt2_tokenizer.encode(PROMPT, bos=False).tolist() == ids[1:].tolist()
    assert gpt2_tokenizer.decode([43453]) == " SolidGoldMagikarp"


def test_vocab_json_and_tokenizer_json_directories_agree():
    a = minigpt2.load(FIXTURES / "tiny-hub")     # vocab.json + merges.txt
    b = minigpt2.load(FIXTURES / "tiny-saved")   # tokenizer.json
    text = "héllo <b> & 'q'"
    assert a.encode(text).tolist() == b.encode(text).tolist()
    assert a.encode(text)[0] == 299 and a.decode(a.encode(text, bos=False)) == text


def test_offline_hub_load_fails_with_one_clear_message(tmp_path):
    code = ("import minigpt2\ntry:\n    minigpt2.load('gpt2')\nexcept minigpt2.LoadError as e:\n    print('ERR', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("ERR could not download 'gpt2' from the Hugging Face hub"), out
    assert "local directory" in out.stdout and "make-checkpoint" in out.stdout


def test_generate_is_greedy_argmax():
    m = minigpt2.load(FIXTURES / "tiny-hub")
    ids = np.array([299, 5, 17])
    out = m.generate(ids, 4)
    assert out[:3].tolist() == ids.tolist() and len(out) == 7
    for i in range(3, 7):
        assert out[i] == np.argmax(m.logits(out[:i])[-1])
    assert len(m.generate(np.arange(22), 10)) == 24  # stops at n_ctx


@pytest.mark.skipif(_online(), reason="the hub is reachable: this test is about being offline")
def test_unreachable_hub_fails_in_one_line_without_retry_noise(tmp_path):
    """No HF_HUB_OFFLINE: the reachability check answers with one line, not the hub library's retry warnings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    env["HF_HOME"] = str(tmp_path / "hf")
    out = subprocess.run([sys.executable, "-m", "analysis.cli", "generate", "x", "--model", "gpt2"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.startswith("minigpt2: error: could not download 'gpt2'") and out.stderr.count("\n") == 1
    assert "cannot reach huggingface.co" in out.stderr and "make-checkpoint" in out.stderr
