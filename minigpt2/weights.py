"""Params: GPT-2 weights split once into per-head arrays, read from a HF safetensors file.

HF stores Conv1D weights as [in, out] (y = x W + b) and fuses q, k, v into c_attn.
We split them here, checking every name and shape against the config on the way,
so that the forward pass never reshapes a weight.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .config import GPT2Config


class WeightsError(ValueError):
    """The checkpoint file is unreadable, or a tensor is missing, misshapen or not finite."""


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


def read_hf_tensors(path: Path, cfg: GPT2Config) -> dict[str, np.ndarray]:
    """Read and check every tensor; return them float32, keyed without the 'transformer.' prefix."""
    from safetensors import SafetensorError, safe_open

    expected = hf_shapes(cfg)
    tensors: dict[str, np.ndarray] = {}
    lm_head = None
    unexpected = []
    try:
        with safe_open(str(path), framework="np") as f:
            for raw in f.keys():
                name = raw.removeprefix("transformer.")
                if name.endswith(IGNORED_SUFFIXES):
                    continue
                if name == "lm_head.weight":
                    lm_head = f.get_tensor(raw)
                    continue
                if name not in expected:
                    unexpected.append(raw)
                    continue
                arr = f.get_tensor(raw)
                if arr.shape != expected[name]:
                    raise WeightsError(f"{path}: tensor {raw!r} has shape {arr.shape}, "
                                       f"config.json implies {expected[name]}")
                if not np.issubdtype(arr.dtype, np.floating):
                    raise WeightsError(f"{path}: tensor {raw!r} has dtype {arr.dtype}, expected a float type")
                arr = np.asarray(arr, dtype=np.float32)
                if not np.isfinite(arr).all():
                    bad = int((~np.isfinite(arr)).sum())
                    raise WeightsError(f"{path}: tensor {raw!r} has {bad} NaN/Inf values")
                tensors[name] = arr
    except SafetensorError as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
    except TypeError as e:  # e.g. bfloat16, which numpy cannot hold
        raise WeightsError(f"{path}: cannot read as numpy ({e})") from None
    except OSError as e:
        raise WeightsError(f"{path}: {e}") from None
    if unexpected:
        raise WeightsError(f"{path}: unexpected tensors for a GPT-2 with this config.json: "
                           f"{', '.join(sorted(unexpected)[:5])}")
    missing = [n for n in expected if n not in tensors]
    if missing:
        raise WeightsError(f"{path}: missing tensor {missing[0]!r}"
                           + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if lm_head is not None and not np.array_equal(np.asarray(lm_head, np.float32), tensors["wte.weight"]):
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


def param_nbytes(params: Params) -> int:
    return sum(getattr(params, f.name).nbytes for f in fields(params))
