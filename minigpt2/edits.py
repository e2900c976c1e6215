"""Edits: typed interventions, checked and compiled once into the arrays the forward pass applies.

Each edit changes one term of the exact decomposition, so an edited trace still decomposes exactly:
- Edit.neuron(l, n, scale, pos): the activation a_n of layer l is multiplied by scale (at one position, or
  all), so the row a_n W_out[l][n] is scaled.
- Edit.head(l, h, scale, source, dest): the rows attn[dest, source] m_source that head (l, h) delivers are
  scaled: all of them, those sent from one source position, those delivered at one destination, or the one
  pair. This is done on the attention probabilities after the softmax (no renormalisation), so Trace.attn
  records what actually ran. b_O is the layer's bias, not the head's, and stays.
- Edit.resid(l, pos, vector): resid_pre[l, pos] is replaced by vector before block l reads it (l = L: the
  final residual). Activation patching from another run: Edit.resid(l, t, other.resid_pre[l, t]).
- Edit.head_z(l, h, z): head (l, h)'s output before W_O, z = attn @ v [T, d_head] at every position, is
  replaced by z (a head's activation patching: z of another run, Trace.head_z(l, h)). The decomposition
  shows the head's delivery as one row per position ("L5 H10 output patched") instead of its messages.

compile_edits() turns a list of edits into Compiled: per layer an attention multiplier [H, T, T], an
activation multiplier [T, m], the patched rows and the replaced head outputs. The forward pass and the decomposition read only that;
neither ever sees an edit object. Several edits on one entry multiply; of two patches of one row the later
one wins (so too of two head_z of one head).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .config import GPT2Config
from .errors import InputError, check_index


class Edit:
    """Constructors of the three edits; model.run(ids, edits=[...])."""

    @staticmethod
    def neuron(layer: int, neuron: int, scale: float = 0.0, pos: int | None = None) -> "NeuronEdit":
        return NeuronEdit(layer, neuron, _scale(scale), pos)

    @staticmethod
    def head(layer: int, head: int, scale: float = 0.0, source: int | None = None,
             dest: int | None = None) -> "HeadEdit":
        return HeadEdit(layer, head, _scale(scale), source, dest)

    @staticmethod
    def resid(layer: int, pos: int, vector) -> "ResidEdit":
        return ResidEdit(layer, pos, _vector(vector))

    @staticmethod
    def head_z(layer: int, head: int, z) -> "HeadOutputEdit":
        return HeadOutputEdit(layer, head, _vector(z, "Edit.head_z"))


@dataclass(frozen=True)
class NeuronEdit:
    layer: int
    neuron: int
    scale: float = 0.0
    pos: int | None = None       # None: every position

    def check(self, cfg: GPT2Config, T: int) -> None:
        check_index(self.layer, cfg.n_layers, "edit layer")
        check_index(self.neuron, cfg.d_mlp, "edit neuron")
        _scale(self.scale)
        if self.pos is not None:
            check_index(self.pos, T, "edit position")

    def __str__(self) -> str:
        at = "" if self.pos is None else f" at {self.pos}"
        return f"neuron {self.layer}-{self.neuron} x{self.scale:g}{at}"


@dataclass(frozen=True)
class HeadEdit:
    layer: int
    head: int
    scale: float = 0.0
    source: int | None = None    # None: every source position
    dest: int | None = None      # None: every destination position

    def check(self, cfg: GPT2Config, T: int) -> None:
        check_index(self.layer, cfg.n_layers, "edit layer")
        check_index(self.head, cfg.n_heads, "edit head")
        _scale(self.scale)
        for name in ("source", "dest"):
            if getattr(self, name) is not None:
                check_index(getattr(self, name), T, f"edit {name}")

    def __str__(self) -> str:
        src = "" if self.source is None else f" from {self.source}"
        dst = "" if self.dest is None else f" to {self.dest}"
        return f"head {self.layer}-{self.head}{src}{dst} x{self.scale:g}"


@dataclass(frozen=True, eq=False)
class ResidEdit:
    layer: int
    pos: int
    vector: np.ndarray           # [D] float32 (float64 if given so, for a float64 model)

    def check(self, cfg: GPT2Config, T: int) -> None:
        check_index(self.layer, cfg.n_layers + 1, "edit layer")
        check_index(self.pos, T, "edit position")
        v = _vector(self.vector)
        if v.shape != (cfg.d_model,):
            raise InputError(f"Edit.resid needs a vector of shape ({cfg.d_model},), got shape {v.shape}")

    def __str__(self) -> str:
        return f"resid_pre[{self.layer}, {self.pos}] replaced"


@dataclass(frozen=True, eq=False)
class HeadOutputEdit:
    layer: int
    head: int
    z: np.ndarray                # [T, e] float32: the head's attn @ v, before W_O

    def check(self, cfg: GPT2Config, T: int) -> None:
        check_index(self.layer, cfg.n_layers, "edit layer")
        check_index(self.head, cfg.n_heads, "edit head")
        z = _vector(self.z, "Edit.head_z")
        if z.shape != (T, cfg.d_head):
            raise InputError(f"Edit.head_z needs z of shape ({T}, {cfg.d_head}) (tokens, d_head), got {z.shape}")

    def __str__(self) -> str:
        return f"head {self.layer}-{self.head} output replaced"


EDIT_TYPES = (NeuronEdit, HeadEdit, ResidEdit, HeadOutputEdit)   # what Edit's constructors make


def _scale(s) -> float:
    if isinstance(s, bool) or not isinstance(s, numbers.Real):
        raise InputError(f"edit scale must be a real number, got {s!r}")
    if not abs(s) <= float(np.finfo(np.float32).max):
        raise InputError(f"edit scale must be finite in float32 (|scale| <= 3.4e38), got {s}")
    return float(s)


def _vector(v, what: str = "Edit.resid") -> np.ndarray:
    """v as a float32 array (float64 stays float64, for a float64 model), or InputError: numbers only (no
    complex, no text), every one finite in float32."""
    try:
        a = np.asarray(v)
    except (ValueError, TypeError) as e:
        raise InputError(f"{what} needs a vector of numbers: {e}") from None
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InputError(f"{what} needs a vector of real numbers, got dtype {a.dtype}")
    with np.errstate(over="ignore"):
        f32 = a.astype(np.float32)
    if not np.isfinite(f32).all():
        i = int(np.argmin(np.isfinite(f32).reshape(-1)))
        raise InputError(f"{what}'s vector holds a non-finite value at index {i} "
                         f"({np.asarray(v).reshape(-1)[i]!r} in float32): give finite numbers")
    return a if a.dtype == np.float64 else f32


def check_edits(edits, cfg: GPT2Config, T: int) -> tuple:
    """edits as a tuple of checked edits; InputError for anything else (one edit alone, text, an int)."""
    if edits is None:
        return ()
    one = isinstance(edits, EDIT_TYPES)
    if one or not isinstance(edits, (list, tuple)):
        raise InputError(f"edits must be a list of minigpt2.Edit.neuron/head/resid/head_z, got "
                         f"{type(edits).__name__}" + (" (wrap one edit in a list: edits=[...])" if one else ""))
    for e in edits:
        if not isinstance(e, EDIT_TYPES):
            raise InputError(f"edits must be made with minigpt2.Edit.neuron/head/resid/head_z, got "
                             f"{type(e).__name__}")
        e.check(cfg, T)
    return tuple(edits)


@dataclass(frozen=True, eq=False)
class Compiled:
    """The edits of one run as arrays (None where a layer has none). L layers, H heads, T tokens, m d_mlp."""
    attn_scale: tuple        # L x [H, T, T] float32 or None: multiplies attn after the softmax
    act_scale: tuple         # L x [T, m] float32 or None: multiplies mlp_acts
    patches: tuple           # L+1 x {pos: [D] float32}: resid_pre[l, pos] replaced (l = L: the final residual)
    head_z: tuple            # L x {head: [T, e] float32}: the head's output before W_O replaced

    @property
    def first_layer(self) -> int | None:
        """The first layer any edit touches (a patch at L counts as L), or None for a clean run."""
        touched = [l for l, a in enumerate(self.attn_scale) if a is not None]
        touched += [l for l, a in enumerate(self.act_scale) if a is not None]
        touched += [l for l, p in enumerate(self.patches) if p]
        touched += [l for l, z in enumerate(self.head_z) if z]
        return min(touched, default=None)

    def patch(self, x: np.ndarray, layer: int) -> np.ndarray:
        """x [T, D] with this layer's patched rows written in (in place: x is the pass's own array)."""
        for pos, vector in self.patches[layer].items():
            x[pos] = vector
        return x

    def latest_patch(self, layer: int, pos: int) -> tuple[int, np.ndarray] | None:
        """(l0, vector) of the last patch of row pos at a layer l0 <= layer: resid_pre[layer, pos] is that
        vector plus what the layers from l0 on added. None: the row is the embeddings' own."""
        for l0 in range(layer, -1, -1):
            if pos in self.patches[l0]:
                return l0, self.patches[l0][pos]
        return None


def put_head_z(z: np.ndarray, replaced: dict) -> np.ndarray:
    """z [H, n, e] (a layer's attn @ v at the first n positions) with the heads an Edit.head_z replaced
    written in, in place: the one place that rule is applied (forward, Trace.head_outputs, backward)."""
    for h, zh in replaced.items():
        z[h] = zh[: z.shape[1]]
    return z


def compile_edits(edits: tuple, cfg: GPT2Config, T: int) -> Compiled:
    """Checked edits (check_edits) -> Compiled arrays for a sequence of T tokens."""
    L, H, m = cfg.n_layers, cfg.n_heads, cfg.d_mlp
    attn, acts = [None] * L, [None] * L
    patches = [{} for _ in range(L + 1)]
    head_z = [{} for _ in range(L)]
    every = slice(None)
    for e in edits:
        if isinstance(e, HeadEdit):
            if attn[e.layer] is None:
                attn[e.layer] = np.ones((H, T, T), np.float32)
            rows = every if e.dest is None else e.dest
            cols = every if e.source is None else e.source
            attn[e.layer][e.head, rows, cols] *= np.float32(e.scale)   # [T, T] query x key, or a row/column/entry
        elif isinstance(e, NeuronEdit):
            if acts[e.layer] is None:
                acts[e.layer] = np.ones((T, m), np.float32)
            acts[e.layer][every if e.pos is None else e.pos, e.neuron] *= np.float32(e.scale)
        elif isinstance(e, HeadOutputEdit):
            head_z[e.layer][e.head] = _vector(e.z, "Edit.head_z")
        else:
            patches[e.layer][e.pos] = _vector(e.vector)
    return Compiled(tuple(attn), tuple(acts), tuple(patches), tuple(head_z))
