"""The analysis' door: every public argument of analyze and nearest_words checked before any work, as an
InputError naming it, and the weights and activations checked against what float32 arithmetic can hold
(NumericError), so that no numpy warning escapes and no word list comes out wrong.
"""
from __future__ import annotations

import numbers

import numpy as np

from minigpt2.errors import InputError, NumericError, check_index


def check_model(model) -> None:
    from minigpt2 import Model
    if not isinstance(model, Model):
        raise InputError(f"expected a minigpt2.Model (from minigpt2.load), got {type(model).__name__}")


def check_int(value, what: str, low: int | None = None, high: int | None = None) -> int:
    """value as an int (a Python or NumPy integer, never a bool or a float), in low..high when given."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise InputError(f"{what} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"in {low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"{what} must be {span}, got {value}")
    return value


def check_flag(value, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{what} must be True or False, got {value!r}")
    return bool(value)


def check_pairs(pairs, what: str, unit: str, n_layers: int, n_units: int) -> list[tuple[int, int]]:
    """heads=[(layer, head), ...] or neurons=[(layer, neuron), ...] as int pairs, each in range, duplicates
    dropped (first kept, order kept)."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, (list, tuple, np.ndarray)):
        raise InputError(f"{what} must be a list of (layer, {unit}) pairs, e.g. [(0, 1)], got {pairs!r}")
    out = []
    for p in pairs:
        if isinstance(p, (str, bytes)) or not isinstance(p, (list, tuple, np.ndarray)) or len(p) != 2:
            raise InputError(f"{what}: each item must be a (layer, {unit}) pair of integers, got {p!r}")
        l = check_int(p[0], f"{what}: the layer of {tuple(p)!r}")
        u = check_int(p[1], f"{what}: the {unit} of {tuple(p)!r}")
        out.append((check_index(l, n_layers, f"{unit} {l}-{u}: layer"), check_index(u, n_units, f"{unit} {l}-{u}: {unit}")))
    return list(dict.fromkeys(out))


def check_vector(vector, d: int) -> np.ndarray:
    """A real, finite vector of shape (d,), as float32 (InputError saying which of these it is not)."""
    try:
        a = np.asarray(vector)
    except (ValueError, TypeError) as e:                   # ragged lists and the like
        raise InputError(f"vector must be an array of {d} real numbers ({e})") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"vector must hold real numbers, got dtype {a.dtype}")
    if a.shape != (d,):
        raise InputError(f"vector must have shape ({d},), got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise InputError(f"vector holds {int(bad.sum())} NaN or infinite value(s) (first at index "
                         f"{int(np.flatnonzero(bad)[0])}); pass a finite vector")
    with np.errstate(over="ignore"):
        f = a.astype(np.float32)
    if not np.isfinite(f).all():
        raise InputError(f"vector holds values beyond float32's range (up to {float(np.abs(a).max()):.3g}); "
                         "scale it down")
    return f


def value_limit(d_model: int) -> float:
    """The largest |value| a weight or an activation may have for the analysis: it multiplies up to four such
    values, summed over up to d_model^2 terms (e.g. |s_v|^2 = std_v^2 |lnf_w n_v|^2 for the unembedding's
    key norms), in float32; at this limit that stays 64 times below float32's maximum. GPT-2's largest
    weights and activations are some thousands; the limit is 5.5e7 for d_model = 768."""
    return float((np.finfo(np.float32).max / (64.0 * d_model * d_model)) ** 0.25)


def _peak(a: np.ndarray) -> float:
    return float(max(a.max(initial=0), -a.min(initial=0)))


def weights(model) -> dict[str, np.ndarray]:
    """Every weight, named for check_range."""
    return {f"weight {name}": a for name, a in vars(model.params).items()}


def recorded(trace) -> dict[str, np.ndarray]:
    """What a run recorded that the analysis multiplies further, named for check_range."""
    return {f"the run's {name}": getattr(trace, name) for name in ("resid_pre", "keys", "values", "mlp_acts")}


def check_range(d_model: int, arrays: dict[str, np.ndarray]) -> None:
    """NumericError naming the first array (a weight, what a run recorded, a query vector) beyond value_limit:
    the forward pass can still be fine there (the LayerNorms remove scale), but the analysis' float32
    products would overflow, and its word lists come out wrong."""
    limit = value_limit(d_model)
    for name, a in arrays.items():
        peak = _peak(np.asarray(a))
        if peak > limit:
            raise NumericError(f"{name} reaches {peak:.3g}, beyond the {limit:.3g} that the analysis can multiply "
                               f"in float32 without overflow (d_model={d_model}); GPT-2's stay below 1e4: these "
                               "weights are far outside GPT-2's range, rescale or replace them")
