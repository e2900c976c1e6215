"""Params: GPT-2 weights split once into per-head arrays, read from a HF safetensors file.

HF stores Conv1D weights as [in, out] (y = x W + b) and fuses q, k, v into c_attn.
We split them here, checking every name and shape against the config on the way,
so that the forward pass never reshapes a weight.
"""
from __future__ import annotations

import json
import mmap
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import GPT2Config
from .errors import WeightsError
from .safeio import open_regular


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
FLOATS = {"F64", "F32", "F16", "BF16"}   # read into float32: F16 and BF16 exactly (bfloat16 is float32's top
                                         # 16 bits), F64 rounded
MAX_HEADER = 100 << 20                     # the safetensors format's own limit on the header


def read_header(path: Path) -> tuple[dict[str, dict], int]:
    """The safetensors header {name: {dtype, shape, data_offsets}}, checked against the file's size, and
    where the data starts (offsets count from there).

    Read by hand (8-byte length, then JSON) so every name, dtype and shape is known, and checked against
    config.json, before a single tensor is allocated.
    """
    try:
        with open_regular(path) as f:                  # a FIFO or a device is named, never read
            size = os.fstat(f.fileno()).st_size
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

    views = _mapped(path, header, data_start, [raw_of[n] for n in wanted])
    tensors = {}
    for name in wanted:
        arr = views[raw_of[name]]
        if not np.isfinite(_f32(arr)).all():                  # a float32 tensor is checked in place
            bad = int((~np.isfinite(_f32(arr))).sum())
            raise WeightsError(f"{path}: tensor {raw_of[name]!r} has {bad} NaN/Inf values")
        tensors[name] = arr
    lm_head = tensors.pop("lm_head.weight", None)
    if lm_head is not None and not np.array_equal(_f32(lm_head), _f32(tensors["wte.weight"])):
        raise WeightsError(f"{path}: lm_head.weight differs from wte.weight; "
                           "only GPT-2s with tied embeddings are supported")
    return tensors


_NUMPY_DTYPE = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}   # bfloat16's bits, as uint16


def _mapped(path: Path, header: dict, data_start: int, names: list[str]) -> dict[str, np.ndarray]:
    """Read-only views of the named tensors in the memory-mapped file (checked offsets: read_header).

    Nothing is copied here: split_params copies each tensor once, into its final per-head layout.
    """
    try:
        with open_regular(path) as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    out = {}
    for name in names:
        info = header[name]
        dt = np.dtype(_NUMPY_DTYPE[info["dtype"]])
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(mm, dt, (b - a) // dt.itemsize, data_start + a).reshape(info["shape"])
    return out


def _f32(a: np.ndarray) -> np.ndarray:
    """float32 values of a tensor view: bfloat16 (held as uint16) by the 16-bit shift, exact; others cast."""
    if a.dtype == np.uint16:
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32, copy=False)


def split_params(t: dict[str, np.ndarray], cfg: GPT2Config) -> Params:
    """Split HF's fused, [in, out]-ordered tensors into per-head arrays, stacked over layers.

    Each weight is copied once, from its (possibly memory-mapped, possibly float16/bfloat16) tensor
    straight into its place in the final float32 array.
    """
    L, H, D, e, m = cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp
    f32 = np.float32

    def stack(suffix: str, shape: tuple) -> np.ndarray:
        out = np.empty((L, *shape), f32)
        for l in range(L):
            out[l] = _f32(t[f"h.{l}.{suffix}"])
        return out

    W_Q, W_K, W_V = (np.empty((L, H, D, e), f32) for _ in range(3))
    b_Q, b_K, b_V = (np.empty((L, H, e), f32) for _ in range(3))
    for l in range(L):
        w = _f32(t[f"h.{l}.attn.c_attn.weight"]).reshape(D, 3, H, e)       # columns: [q | k | v], each [H, e]
        b = _f32(t[f"h.{l}.attn.c_attn.bias"]).reshape(3, H, e)
        for i, (W, B) in enumerate(((W_Q, b_Q), (W_K, b_K), (W_V, b_V))):
            W[l] = w[:, i].transpose(1, 0, 2)                                 # [D, H, e] -> [H, D, e]
            B[l] = b[i]
    return Params(
        W_E=_owned(t["wte.weight"]), W_pos=_owned(t["wpe.weight"]),
        ln1_w=stack("ln_1.weight", (D,)), ln1_b=stack("ln_1.bias", (D,)),
        W_Q=W_Q, W_K=W_K, W_V=W_V, b_Q=b_Q, b_K=b_K, b_V=b_V,
        W_O=stack("attn.c_proj.weight", (D, D)).reshape(L, H, e, D),   # rows are the concatenated heads
        b_O=stack("attn.c_proj.bias", (D,)),
        ln2_w=stack("ln_2.weight", (D,)), ln2_b=stack("ln_2.bias", (D,)),
        W_in=stack("mlp.c_fc.weight", (D, m)), b_in=stack("mlp.c_fc.bias", (m,)),
        W_out=stack("mlp.c_proj.weight", (m, D)), b_out=stack("mlp.c_proj.bias", (D,)),
        lnf_w=_owned(t["ln_f.weight"]), lnf_b=_owned(t["ln_f.bias"]),
    )


def _owned(a: np.ndarray) -> np.ndarray:
    """A float32 array of its own: a view of the mapped file is copied, a widened float16 is not again."""
    return np.require(_f32(a), requirements="O")


def load_params(path: str | Path, cfg: GPT2Config) -> Params:
    return split_params(read_hf_tensors(Path(path), cfg), cfg)
