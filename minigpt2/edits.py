"""Edits: typed interventions applied inside the forward pass (no hooks, no string keys).

Each edit changes one term of the exact decomposition, so an edited trace still decomposes exactly:
- Edit.neuron(l, n, scale, pos): the activation a_n of layer l is multiplied by scale (at one position, or
  all), so the row a_n W_out[l][n] is scaled.
- Edit.head(l, h, scale, source, dest): the rows attn[dest, source] m_source that head (l, h) delivers are
  scaled: all of them, those sent from one source position, those delivered at one destination, or the one
  pair. This is done on the attention probabilities after the softmax (no renormalisation), so Trace.attn
  records what actually ran. b_O is the layer's bias, not the head's, and stays.
- Edit.resid(l, pos, vector): resid_pre[l, pos] is replaced by vector before block l reads it (l = L: the
  final residual). Activation patching from another run: Edit.resid(l, t, other.resid_pre[l, t]).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import GPT2Config
from .errors import InputError


class Edit:
    """Constructors of the three edits; model.run(ids, edits=[...])."""

    @staticmethod
    def neuron(layer: int, neuron: int, scale: float = 0.0, pos: int | None = None) -> "NeuronEdit":
        return NeuronEdit(layer, neuron, float(scale), pos)

    @staticmethod
    def head(layer: int, head: int, scale: float = 0.0, source: int | None = None,
             dest: int | None = None) -> "HeadEdit":
        return HeadEdit(layer, head, float(scale), source, dest)

    @staticmethod
    def resid(layer: int, pos: int, vector) -> "ResidEdit":
        return ResidEdit(layer, pos, np.array(vector, dtype=np.float32))


@dataclass(frozen=True)
class NeuronEdit(Edit):
    layer: int
    neuron: int
    scale: float = 0.0
    pos: int | None = None       # None: every position

    def check(self, cfg: GPT2Config, T: int) -> None:
        _in(self.layer, cfg.n_layers, "layer")
        _in(self.neuron, cfg.d_mlp, "neuron")
        _scale(self.scale)
        if self.pos is not None:
            _in(self.pos, T, "position")

    def __str__(self) -> str:
        at = "" if self.pos is None else f" at {self.pos}"
        return f"neuron {self.layer}-{self.neuron} x{self.scale:g}{at}"


@dataclass(frozen=True)
class HeadEdit(Edit):
    layer: int
    head: int
    scale: float = 0.0
    source: int | None = None    # None: every source position
    dest: int | None = None      # None: every destination position

    def check(self, cfg: GPT2Config, T: int) -> None:
        _in(self.layer, cfg.n_layers, "layer")
        _in(self.head, cfg.n_heads, "head")
        _scale(self.scale)
        for name in ("source", "dest"):
            if getattr(self, name) is not None:
                _in(getattr(self, name), T, name)

    def __str__(self) -> str:
        src = "" if self.source is None else f" from {self.source}"
        dst = "" if self.dest is None else f" to {self.dest}"
        return f"head {self.layer}-{self.head}{src}{dst} x{self.scale:g}"


@dataclass(frozen=True, eq=False)
class ResidEdit(Edit):
    layer: int
    pos: int
    vector: np.ndarray           # [D]

    def check(self, cfg: GPT2Config, T: int) -> None:
        _in(self.layer, cfg.n_layers + 1, "layer")
        _in(self.pos, T, "position")
        if self.vector.shape != (cfg.d_model,) or not np.isfinite(self.vector).all():
            raise InputError(f"Edit.resid needs a finite vector of shape ({cfg.d_model},), "
                             f"got shape {self.vector.shape}")

    def __str__(self) -> str:
        return f"resid_pre[{self.layer}, {self.pos}] replaced"


def _in(i, n: int, what: str) -> None:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
        raise InputError(f"edit {what} {i!r} is outside 0..{n - 1}")


def _scale(s: float) -> None:
    if not np.isfinite(s):
        raise InputError(f"edit scale must be finite, got {s}")


def check_edits(edits, cfg: GPT2Config, T: int) -> tuple:
    edits = tuple(edits or ())
    for e in edits:
        if not isinstance(e, (NeuronEdit, HeadEdit, ResidEdit)):
            raise InputError(f"edits must be made with minigpt2.Edit.neuron/head/resid, got {type(e).__name__}")
        e.check(cfg, T)
    return edits
