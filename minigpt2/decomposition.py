"""A residual as rows that sum to it: Decomposition (with the rows' vectors) and Contributions (their
norms and direct effects only), both made by Trace.decompose / Trace.contributions, and their row labels."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .readout import ln_final_scale, logit_directions
from .weights import Params


# The block of the model each kind of row comes from: the one map from kind to block.
BLOCK_OF = {"tok_embed": "embedding", "pos_embed": "embedding", "patch": "patch", "message": "attention",
            "head_out": "attention", "b_O": "attention", "neuron": "mlp", "b_out": "mlp"}


@dataclass(frozen=True)
class Contributions:
    """decompose()'s rows without their vectors: n rows, each with its norm and direct effects on K tokens."""
    layer: int
    pos: int
    kind: np.ndarray      # [n] as Decomposition.kind
    layer_of: np.ndarray  # [n]
    head: np.ndarray      # [n]
    source: np.ndarray    # [n]
    neuron: np.ndarray    # [n]
    weight: np.ndarray    # [n]
    norm: np.ndarray      # [n] |row vector|
    effects: np.ndarray   # [n, K] ((v - mean v) / std) . (lnf_w * W_E[token_k]), std of resid_pre[layer, pos]
    error: float          # max |sum of the rows - resid_pre[layer, pos]|
    single: np.ndarray    # [k] the rows that stand alone: embeddings or patch, b_O, b_out (not messages, neurons)
    single_vectors: np.ndarray   # [k, D] their vectors

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def __repr__(self) -> str:
        return f"<Contributions to resid_pre[{self.layer}, {self.pos}]: {len(self)} rows, max error {self.error:.1e}>"

    @property
    def labels(self) -> list[str]:
        return row_labels(self)


@dataclass(frozen=True)
class Decomposition:
    """Rows whose vectors sum to resid_pre[layer, pos]. n = number of rows."""
    layer: int
    pos: int
    kind: np.ndarray      # [n] "tok_embed" | "pos_embed" | "patch" | "message" | "head_out" (a head whose
                          #   output an Edit.head_z replaced) | "b_O" | "neuron" | "b_out"
    layer_of: np.ndarray  # [n] layer of the contribution (-1 for embeddings)
    head: np.ndarray      # [n] head, for messages (else -1)
    source: np.ndarray    # [n] source token, for messages (else pos)
    neuron: np.ndarray    # [n] neuron index, for neurons (else -1)
    weight: np.ndarray    # [n] attention (messages), activation (neurons), 1 otherwise
    vectors: np.ndarray   # [n, D] the contributions, weight already applied
    target: np.ndarray    # [D] resid_pre[layer, pos] as the forward pass computed it
    params: Params | None = field(default=None, repr=False)   # the weights (for direct effects)
    layer_norm_eps: float = 1e-5
    subset_of: int = 0    # 0: every row; else a subset (d.where, d[...], d.top) of a decomposition of that many rows

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @property
    def complete(self) -> bool:
        """Whether these are all the rows (then they sum to target), not a subset picked from them."""
        return self.subset_of == 0

    def __repr__(self) -> str:
        where = f"resid_pre[{self.layer}, {self.pos}]"
        if self.complete:
            return f"<Decomposition of {where}: {len(self)} rows, max error {self.max_abs_error():.1e}>"
        return (f"<Decomposition of {where}, a subset: {len(self)} of {self.subset_of} rows, |sum| "
                f"{np.linalg.norm(self.total()):.3g}; the other rows' |sum| {np.linalg.norm(self.rest()):.3g}>")

    @property
    def labels(self) -> list[str]:
        return row_labels(self)

    def __getitem__(self, idx) -> "Decomposition":
        """Rows by position, slice, boolean mask or index array; always a Decomposition (d[3] has one row)."""
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        pick = {f: getattr(self, f)[idx] for f in ("kind", "layer_of", "head", "source", "neuron", "weight",
                                                    "vectors")}
        if not self.complete:                                         # a subset of a subset: count from the whole
            return replace(self, **pick)
        same = len(pick["kind"]) == len(self) and np.array_equal(np.sort(np.arange(len(self))[idx]),
                                                                  np.arange(len(self)))
        return replace(self, **pick, subset_of=0 if same else len(self))

    def where(self, kind: str | None = None, layer: int | None = None, head: int | None = None,
              neuron: int | None = None) -> "Decomposition":
        """The rows of one kind, layer (of the contribution), head or neuron, e.g. d.where(layer=5, head=10)."""
        mask = np.ones(len(self), bool)
        for value, col in ((kind, self.kind), (layer, self.layer_of), (head, self.head), (neuron, self.neuron)):
            if value is not None:
                mask &= col == value
        return self[mask]

    def direct_effects(self, token: int) -> np.ndarray:
        """Each row's direct effect on the logit of token [n]: ((v - mean v) / std) . (lnf_w * W_E[token]), with
        std the final LayerNorm's scale of the whole residual (resid_pre[layer, pos], the logit lens before the
        last layer). For the final residual these plus b_U[token] = lnf_b . W_E[token] sum to the logit."""
        w = logit_directions(self.params, int(token), ln_final_scale(self.target, self.layer_norm_eps))  # [D]
        return self.vectors @ w

    def top(self, n: int = 20, by: str = "norm", token: int | None = None) -> "Decomposition":
        """The n rows largest by |norm| or, with by="direct_effect", by |direct effect| on token."""
        if by == "norm":
            key = np.sqrt(np.einsum("nd,nd->n", self.vectors, self.vectors))
        elif by == "direct_effect":
            if token is None:
                raise ValueError('by="direct_effect" needs token=, e.g. the predicted token id')
            key = np.abs(self.direct_effects(token))
        else:
            raise ValueError(f'by must be "norm" or "direct_effect", got {by!r}')
        return self[np.argsort(-key, kind="stable")[:n]]

    def by(self, key: str) -> "Decomposition":
        """The rows summed in groups, still summing to the same residual: "kind" (one row per kind), "layer"
        (embeddings, then attention and MLP of each layer), "head" (each head's messages; b_O, neurons and
        b_out one row per layer). In a grouped row, weight is the number of rows it sums."""
        block = BLOCK_OF
        if key == "kind":
            keys = [(k, -1, -1) for k in self.kind.tolist()]
        elif key == "layer":
            keys = [(block[k], l, -1) for k, l in zip(self.kind.tolist(), self.layer_of.tolist())]
        elif key == "head":
            keys = [(k, l, h) for k, l, h in zip(self.kind.tolist(), self.layer_of.tolist(), self.head.tolist())]
        else:
            raise ValueError(f'key must be "kind", "layer" or "head", got {key!r}')
        groups = {}
        for i, g in enumerate(keys):
            groups.setdefault(g, []).append(i)
        kinds, layers, heads = zip(*groups)
        vecs = np.stack([self.vectors[ix].sum(axis=0, dtype=np.float64) for ix in groups.values()]).astype(np.float32)
        n = len(groups)
        return replace(self, kind=np.array(kinds), layer_of=np.array(layers), head=np.array(heads),
                       source=np.full(n, -1), neuron=np.full(n, -1),
                       weight=np.array([len(ix) for ix in groups.values()], np.float32), vectors=vecs)

    def total(self) -> np.ndarray:
        """The rows summed in float64: [D]."""
        return self.vectors.sum(axis=0, dtype=np.float64)

    def rest(self) -> np.ndarray:
        """What the rows not picked sum to: resid_pre[layer, pos] - total(), [D] float64 (0 up to rounding
        for the whole decomposition)."""
        return self.target - self.total()

    def max_abs_error(self) -> float:
        """max |sum of rows - resid_pre[layer, pos]|: the proof that the decomposition is complete. A subset
        has no error to prove: it raises ValueError (its sum is total(), the other rows' rest())."""
        if not self.complete:
            raise ValueError(f"a subset ({len(self)} of {self.subset_of} rows) does not sum to the residual: its sum is "
                             ".total(), the other rows' sum .rest()")
        return float(np.abs(self.total() - self.target).max())


def row_labels(rows) -> list[str]:
    """A readable name per row ("L5 H10 message from 3", "L2 N666", ...) of a Decomposition or Contributions."""
    return [_label(*r) for r in zip(rows.kind.tolist(), rows.layer_of.tolist(), rows.head.tolist(),
                                    rows.source.tolist(), rows.neuron.tolist())]


_FIXED = {"tok_embed": "token embedding", "pos_embed": "position embedding", "embedding": "embeddings"}
_SUMMED = {"message": "messages", "neuron": "neurons"}     # by("kind") rows: one per kind, no layer


def _label(kind: str, l: int, h: int, s: int, n: int) -> str:
    if kind in _FIXED:
        return _FIXED[kind]
    if l < 0:
        return _SUMMED.get(kind, kind)
    if kind == "message":
        return f"L{l} H{h} message from {s}" if s >= 0 else (f"L{l} H{h} messages" if h >= 0 else f"L{l} messages")
    if kind == "neuron":
        return f"L{l} N{n}" if n >= 0 else f"L{l} neurons"
    if kind == "patch":
        return f"resid_pre[{l}] patched"
    if kind == "head_out":
        return f"L{l} H{h} output patched"
    return f"L{l} {dict(attention='attention', mlp='MLP').get(kind, kind)}"      # b_O, b_out, attention, MLP
