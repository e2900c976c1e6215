"""Params: GPT-2 weights split once into per-head arrays, read from a HF safetensors file.

HF stores Conv1D weights as [in, out] (y = x W + b) and fuses q, k, v into c_attn.
We split them here, checking every name and shape against the config on the way,
so that the forward pass never reshapes a weight.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import GPT2Config
from .errors import WeightsError


@dataclass(frozen=True)
class Params:
    W_E: np.ndarray     # [V, D]        token embedding (also the unembedding: tied)
    W_pos: np.ndarray   # [n_ctx, D]    position embedding
    ln1_w: np.ndarray   # [L, D]
    ln1_b: np.ndarray   # [L, D]
    W_Q: np.ndarray     # [L, H, D, e]
    W_K: np.ndarray     # [L, H, D, e]
    W_V: np.ndarray     # [L, H, D, e]
    b_Q: np.ndarray     # [L, H, e]
    b_K: np.ndarray     # [L, H, e]
    b_V: np.ndarray     # [L, H, e]
    W_O: np.ndarray     # [L, H, e, D]
    b_O: np.ndarray     # [L, D]
    ln2_w: np.ndarray   # [L, D]
    ln2_b: np.ndarray   # [L, D]
    W_in: np.ndarray    # [L, D, m]
    b_in: np.ndarray    # [L, m]
    W_out: np.ndarray   # [L, m, D]
    b_out: np.ndarray   # [L, D]
    lnf_w: np.ndarray   # [D]
    lnf_b: np.ndarray   # [D]


IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not weights


def hf_shapes(cfg: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Every tensor name (without the 'transformer.' prefix) and its shape in a HF GPT-2 file."""
    D, m = cfg.d_model, cfg.d_mlp
    shapes = {"wte.weight": (cfg.d_vocab, D), "wpe.weight": (cfg.n_ctx, D),
              "ln_f.weight": (D,), "ln_f.bias": (D,)}
    for l in range(cfg.n_layers):
        p = f"h.{l}."
        shapes.update({
            p + "ln_1.weight": (D,), p + "ln_1.bias": (D,),
            p + "attn.c_attn.weight": (D, 3 * D), p + "attn.c_attn.bias": (3 * D,),
            p + "attn.c_proj.weight": (D, D), p + "attn.c_proj.bias": (D,),
            p + "ln_2.weight": (D,), p + "ln_2.bias": (D,),
            p + "mlp.c_fc.weight": (D, m), p + "mlp.c_fc.bias": (m,),
            p + "mlp.c_proj.weight": (m, D), p + "mlp.c_proj.bias": (D,),
        })
    return shapes


ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
FLOATS = {"F64", "F32", "F16", "BF16"}   # all read exactly into float32 (bfloat16 is float32's top 16 bits)
MAX_HEADER = 100 << 20                     # the safetensors format's own limit on the header


def read_header(path: Path) -> tuple[dict[str, dict], int]:
    """The safetensors header {name: {dtype, shape, data_offsets}}, checked against the file's size, and
    where the data starts (offsets count from there).

    Read by hand (8-byte length, then JSON) so every name, dtype and shape is known, and checked against
    config.json, before a single tensor is allocated.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or not 2 <= n <= min(size - 8, MAX_HEADER):
                raise WeightsError(f"{path}: not a safetensors file (header length {n} does not fit "
                                   f"the file's {size} bytes)")
            header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        if isinstance(e, WeightsError):
            raise
        raise WeightsError(f"{path}: not a safetensors file (its header is not JSON)") from None
    except OSError as e:
        raise WeightsError(f"{path}: {e.strerror or e}") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a safetensors file (its header is not a JSON object)")
    header.pop("__metadata__", None)
    data = size - 8 - n
    for name, info in header.items():
        ok = (isinstance(info, dict) and info.get("dtype") in ITEMSIZE and isinstance(info.get("shape"), list)
              and all(type(d) is int and d >= 0 for d in info["shape"])
              and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2
              and all(type(o) is int for o in info["data_offsets"]))
        if ok:
            a, b = info["data_offsets"]
            ok = 0 <= a <= b <= data and b - a == ITEMSIZE[info["dtype"]] * int(np.prod(info["shape"], dtype=object))
        if not ok:
            raise WeightsError(f"{path}: not a readable safetensors file (tensor {name!r} has a malformed dtype, "
                               "shape or byte range: the file is truncated or damaged)")
    return header, 8 + n


def _n_layers_in(names) -> int:
    found = {int(m.group(1)) for n in names if (m := re.match(r"h\.(\d+)\.", n))}
    return max(found) + 1 if found else 0


def read_hf_tensors(path: Path, cfg: GPT2Config) -> dict[str, np.ndarray]:
    """Read and check every tensor; return them float32, keyed without the 'transformer.' prefix.

    Names and shapes are checked against config.json from the header alone, before anything is read.
    float16 and bfloat16 tensors are widened exactly to float32.
    """
    from safetensors import SafetensorError, safe_open

    header, data_start = read_header(path)
    raw_of: dict[str, str] = {}            # stripped name -> name in the file
    for raw in header:
        name = raw.removeprefix("transformer.")
        if name in raw_of:
            raise WeightsError(f"{path}: tensors {raw_of[name]!r} and {raw!r} are the same weight under two "
                               "key layouts; keep one")
        raw_of[name] = raw
    names = [n for n in raw_of if not n.endswith(IGNORED_SUFFIXES)]
    n_file = _n_layers_in(names)
    if n_file != cfg.n_layers:
        raise WeightsError(f"{path}: config.json says n_layer={cfg.n_layers}, but the file holds "
                           f"{n_file} layers (h.0 .. h.{n_file - 1})")
    expected = hf_shapes(cfg)
    unexpected = [raw_of[n] for n in names if n not in expected and n != "lm_head.weight"]
    if unexpected:
        raise WeightsError(f"{path}: unexpected tensors for a GPT-2 with this config.json: "
                           f"{', '.join(sorted(unexpected)[:5])}")
    missing = [n for n in expected if n not in raw_of]
    if missing:
        raise WeightsError(f"{path}: missing tensor {missing[0]!r}"
                           + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    wanted = dict(expected)
    if "lm_head.weight" in raw_of:
        wanted["lm_head.weight"] = expected["wte.weight"]
    for name, shape in wanted.items():
        info = header[raw_of[name]]
        if tuple(info["shape"]) != shape:
            raise WeightsError(f"{path}: tensor {raw_of[name]!r} has shape {tuple(info['shape'])}, "
                               f"config.json implies {shape}")
        if info["dtype"] not in FLOATS:
            raise WeightsError(f"{path}: tensor {raw_of[name]!r} has dtype {info['dtype']}, expected a float type")

    tensors: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="np") as f, open(path, "rb") as raw_file:
            for name in wanted:
                raw, info = raw_of[name], header[raw_of[name]]
                if info["dtype"] == "BF16":   # numpy has no bfloat16: its bits are float32's upper half
                    raw_file.seek(data_start + info["data_offsets"][0])
                    bits = np.frombuffer(raw_file.read(2 * int(np.prod(info["shape"]))), "<u2")
                    arr = (bits.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])
                else:
                    arr = np.asarray(f.get_tensor(raw), dtype=np.float32)
                if not np.isfinite(arr).all():
                    bad = int((~np.isfinite(arr)).sum())
                    raise WeightsError(f"{path}: tensor {raw!r} has {bad} NaN/Inf values")
                tensors[name] = arr
    except SafetensorError as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    except OSError as e:
        raise WeightsError(f"{path}: {e.strerror or e}") from None
    lm_head = tensors.pop("lm_head.weight", None)
    if lm_head is not None and not np.array_equal(lm_head, tensors["wte.weight"]):
        raise WeightsError(f"{path}: lm_head.weight differs from wte.weight; "
                           "only GPT-2s with tied embeddings are supported")
    return tensors


def split_params(t: dict[str, np.ndarray], cfg: GPT2Config) -> Params:
    """Split HF's fused, [in, out]-ordered tensors into per-head arrays, stacked over layers."""
    L, H, D, e = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head

    def stack(suffix: str) -> np.ndarray:
        return np.stack([t[f"h.{l}.{suffix}"] for l in range(L)])

    c_attn_w = stack("attn.c_attn.weight").reshape(L, D, 3, H, e)   # columns: [q | k | v], each [H, e]
    c_attn_w = c_attn_w.transpose(2, 0, 3, 1, 4)                     # [3, L, H, D, e]
    c_attn_b = stack("attn.c_attn.bias").reshape(L, 3, H, e).transpose(1, 0, 2, 3)  # [3, L, H, e]
    W_O = stack("attn.c_proj.weight").reshape(L, H, e, D)            # rows are the concatenated heads
    c = np.ascontiguousarray
    return Params(
        W_E=t["wte.weight"], W_pos=t["wpe.weight"],
        ln1_w=stack("ln_1.weight"), ln1_b=stack("ln_1.bias"),
        W_Q=c(c_attn_w[0]), W_K=c(c_attn_w[1]), W_V=c(c_attn_w[2]),
        b_Q=c(c_attn_b[0]), b_K=c(c_attn_b[1]), b_V=c(c_attn_b[2]),
        W_O=c(W_O), b_O=stack("attn.c_proj.bias"),
        ln2_w=stack("ln_2.weight"), ln2_b=stack("ln_2.bias"),
        W_in=stack("mlp.c_fc.weight"), b_in=stack("mlp.c_fc.bias"),
        W_out=stack("mlp.c_proj.weight"), b_out=stack("mlp.c_proj.bias"),
        lnf_w=t["ln_f.weight"], lnf_b=t["ln_f.bias"],
    )


def load_params(path: str | Path, cfg: GPT2Config) -> Params:
    return split_params(read_hf_tensors(Path(path), cfg), cfg)
