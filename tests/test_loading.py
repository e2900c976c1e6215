"""Loader edge cases: each bad checkpoint gets a clear error naming the file and tensor; good ones load."""
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import minigpt2
from minigpt2 import LoadError

from .conftest import FIXTURES


@pytest.fixture
def ckpt(tmp_path):
    """A writable copy of the hub-layout fixture, and its tensors."""
    d = tmp_path / "ckpt"
    shutil.copytree(FIXTURES / "tiny-hub", d)
    return d, load_file(str(d / "model.safetensors"))


def rewrite(d, tensors):
    save_file(tensors, str(d / "model.safetensors"))


def test_hub_layout_has_mask_buffers_and_loads(ckpt):
    d, t = ckpt
    assert sum(k.endswith(".attn.bias") for k in t) == 3 and not any(k.startswith("transformer.") for k in t)
    assert minigpt2.load(d).cfg.n_layers == 3


def test_saved_layout_has_prefix_and_no_lm_head():
    t = load_file(str(FIXTURES / "tiny-saved" / "model.safetensors"))
    assert all(k.startswith("transformer.") for k in t) and "lm_head.weight" not in t
    minigpt2.load(FIXTURES / "tiny-saved")


def test_masked_bias_buffers_and_tied_lm_head_are_accepted(ckpt):
    d, t = ckpt
    t["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
    t["lm_head.weight"] = t["wte.weight"].copy()
    rewrite(d, t)
    minigpt2.load(d)


def test_untied_lm_head_is_rejected(ckpt):
    d, t = ckpt
    t["lm_head.weight"] = t["wte.weight"] + 1
    rewrite(d, t)
    with pytest.raises(LoadError, match="lm_head.weight"):
        minigpt2.load(d)


def test_truncated_file(ckpt):
    d, _ = ckpt
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(LoadError, match=r"model\.safetensors.*not a readable safetensors file"):
        minigpt2.load(d)


def test_wrong_shape_names_the_tensor(ckpt):
    d, t = ckpt
    t["h.1.mlp.c_fc.weight"] = t["h.1.mlp.c_fc.weight"][:, :-1].copy()
    rewrite(d, t)
    with pytest.raises(LoadError, match=r"h\.1\.mlp\.c_fc\.weight.*shape \(48, 79\).*\(48, 80\)"):
        minigpt2.load(d)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(ckpt, bad):
    d, t = ckpt
    t["h.2.ln_2.bias"][3] = bad
    rewrite(d, t)
    with pytest.raises(LoadError, match=r"h\.2\.ln_2\.bias.*1 NaN/Inf"):
        minigpt2.load(d)


def test_missing_tensor(ckpt):
    d, t = ckpt
    del t["h.0.attn.c_proj.bias"]
    rewrite(d, t)
    with pytest.raises(LoadError, match=r"model\.safetensors: missing tensor 'h\.0\.attn\.c_proj\.bias'"):
        minigpt2.load(d)


def test_unexpected_tensor(ckpt):
    d, t = ckpt
    t["h.3.attn.c_attn.weight"] = t["h.0.attn.c_attn.weight"]  # a layer config.json does not have
    rewrite(d, t)
    with pytest.raises(LoadError, match=r"n_layer=3, but the file holds 4 layers \(h\.0 \.\. h\.3\)"):
        minigpt2.load(d)


@pytest.mark.parametrize("change, match", [
    ({"model_type": "llama"}, "model_type is 'llama'"),
    ({"activation_function": "relu"}, "activation_function 'relu'"),
    ({"n_head": 5}, "not divisible"),
    ({"n_embd": None}, "config.json"),
])
def test_non_gpt2_or_broken_config(ckpt, change, match):
    d, _ = ckpt
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(change)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LoadError, match=match):
        minigpt2.load(d)


def test_pickle_only_directory_is_refused(ckpt):
    d, _ = ckpt
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(LoadError, match="never reads pickled weights"):
        minigpt2.load(d)


def test_missing_tokenizer(ckpt):
    d, _ = ckpt
    (d / "vocab.json").unlink()
    with pytest.raises(LoadError, match="no tokenizer.json"):
        minigpt2.load(d)


def test_missing_config_and_not_a_directory(tmp_path):
    with pytest.raises(LoadError, match="config.json: file not found"):
        minigpt2.load(tmp_path)
    with pytest.raises(LoadError, match="no such directory"):
        minigpt2.load(str(tmp_path / "nope"))


def test_bad_ids_give_clear_errors():
    m = minigpt2.load(FIXTURES / "tiny-hub")
    with pytest.raises(minigpt2.InputError, match="empty input"):
        m.run([])
    with pytest.raises(minigpt2.InputError, match="longer than the model's context of 24"):
        m.run(np.zeros(25, int))
    with pytest.raises(minigpt2.InputError, match="token id 300 at position 1 is outside"):
        m.run([1, 300])
    with pytest.raises(minigpt2.InputError, match="token id -1"):
        m.logits([-1])
    with pytest.raises(minigpt2.InputError, match=r"layer \(L = the final residual\) 4 is outside 0..3"):
        m.run([1, 2]).decompose(4, 0)
    with pytest.raises(IndexError, match="position 2 is outside 0..1"):      # also an IndexError
        m.run([1, 2]).decompose(1, 2)
    with pytest.raises(minigpt2.InputError, match="layer 3 is outside 0..2"):
        m.pattern_matrix(3, 0)
    with pytest.raises(minigpt2.InputError, match="head 4 is outside 0..3"):
        m.message_matrix(0, 4)


def test_a_loaded_model_owns_its_weights_when_the_file_is_rewritten_in_place(ckpt):
    # cp over the checkpoint, or any writer that rewrites the same file, changes the bytes under a mapping:
    # a model still holding views of the mapped file would change with them (or crash, if it shrank)
    d, _ = ckpt
    m = minigpt2.load(d)
    before = {f: getattr(m.params, f).copy() for f in ("W_E", "W_pos", "W_Q", "W_out", "lnf_w", "lnf_b")}
    path = d / "model.safetensors"
    header = 8 + int.from_bytes(path.read_bytes()[:8], "little")
    with open(path, "r+b") as f:                                   # same file, same size: data zeroed in place
        f.seek(header)
        f.write(bytes(path.stat().st_size - header))
    for f, arr in before.items():
        np.testing.assert_array_equal(getattr(m.params, f), arr)
