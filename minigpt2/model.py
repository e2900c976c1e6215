"""Model: load a GPT-2 (hub id or local directory), encode text, run it, and read its merged matrices."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import forward
from .config import GPT2Config
from .errors import ConfigError, InputError, LoadError, TokenizerError, WeightsError, check_index
from .backward import Grads, backward
from .hub import WEIGHTS_FILE, resolve
from .tokenizer import GPT2Tokenizer
from .trace import Trace
from .weights import Params, load_params


class Model:
    """A GPT-2: its config, its per-head weights and its tokenizer."""

    def __init__(self, cfg: GPT2Config, params: Params, tokenizer: GPT2Tokenizer, source: str = ""):
        self.cfg = cfg
        self.params = params
        self.tokenizer = tokenizer
        self.source = source

    # text <-> ids
    def encode(self, text: str, bos: bool = True) -> np.ndarray:
        """Token ids [T]; with bos (the default), <|endoftext|> (id 50256) comes first, as in the essay,
        unless the text already starts with it (see GPT2Tokenizer.encode)."""
        return self.tokenizer.encode(text, bos=bos)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def token_strings(self, ids) -> list[str]:
        return self.tokenizer.token_strings(ids)

    # forward
    def run(self, ids, edits=()) -> Trace:
        """Forward pass recording every pattern and message (as keys and values, expanded on access),
        attention, activation and residual.

        edits: minigpt2.Edit.neuron / head / resid, applied inside the pass (see minigpt2.edits)."""
        return forward.run(self.params, self.cfg, ids, edits)

    def grad(self, ids, *, targets=None, edits=()) -> Grads:
        """The backward pass: Grads of the mean cross-entropy of logits[t] against targets[t] (default: the next
        token, ids[1:], the last position unscored: HF's loss with labels=ids; a negative target is not
        scored), through the edited model. Holds the trace of the forward pass plus one layer's temporaries."""
        tr = self.run(ids, edits)
        return backward(tr, self.cfg, targets)

    def unembed(self, x: np.ndarray) -> np.ndarray:
        """Logits of residual vectors x [..., D]: LN_f(x) @ W_E^T, [..., V]. The logit lens, for any layer."""
        try:
            x = np.asarray(x, np.float32)
        except (TypeError, ValueError) as e:
            raise InputError(f"unembed needs real vectors [..., {self.cfg.d_model}]: {e}") from None
        if x.ndim == 0 or x.shape[-1] != self.cfg.d_model:
            raise InputError(f"unembed needs vectors of width d_model = {self.cfg.d_model}, got shape {x.shape}")
        return forward.unembed(x.reshape(-1, x.shape[-1]), self.params, self.cfg.layer_norm_eps).reshape(
            *x.shape[:-1], self.cfg.d_vocab)

    def __repr__(self) -> str:
        c = self.cfg
        return (f"<Model {self.source or 'in memory'}: {c.n_layers} layers x {c.n_heads} heads, d_model {c.d_model}, "
                f"d_mlp {c.d_mlp}, vocabulary {c.d_vocab}, context {c.n_ctx}"
                + ("; RANDOM weights (make-checkpoint): the words mean nothing>" if c.random_weights else ">"))

    def logits(self, ids, edits=(), start: int = 0, resid: np.ndarray | None = None) -> np.ndarray:
        """Forward pass recording nothing: [T, V]. edits as in run(); start/resid resume at a block
        from an earlier run's resid_pre[start] (see forward.logits)."""
        return forward.logits(self.params, self.cfg, ids, edits, start, resid)

    def generate(self, ids, n_new: int) -> np.ndarray:
        """Greedy decoding: ids followed by n_new argmax tokens (stops at the context length)."""
        ids = forward.check_ids(ids, self.cfg)
        if isinstance(n_new, bool) or not isinstance(n_new, (int, np.integer)) or n_new < 0:
            raise InputError(f"number of new tokens must be an integer >= 0, got {n_new!r}")
        for _ in range(min(n_new, self.cfg.n_ctx - ids.shape[0])):
            ids = np.append(ids, np.argmax(self.logits(ids)[-1]))
        return ids

    # merged matrices
    def _check_head(self, layer: int, head: int) -> None:
        check_index(layer, self.cfg.n_layers, "layer")
        check_index(head, self.cfg.n_heads, "head")

    def pattern_matrix(self, layer: int, head: int) -> np.ndarray:
        """W_P = W_Q W_K^T / sqrt(d_head), [D, D], rank d_head. The 1/sqrt(d_head) is folded in.

        Row-vector convention (x~ = LN1(resid), shape [D]): score[q, k] = x~_q W_P x~_k^T + bias terms.
        The pattern key token k leaves behind is p_k = x~_k W_P^T + b_K W_Q^T / sqrt(d_head), exactly
        Trace.patterns[layer, head, k]; then score[q, k] = x~_q . p_k + Trace.pattern_bias[layer, head, k].
        """
        self._check_head(layer, head)
        p = self.params
        return (p.W_Q[layer, head] @ p.W_K[layer, head].T) * np.float32(1.0 / np.sqrt(self.cfg.d_head))

    def message_matrix(self, layer: int, head: int) -> np.ndarray:
        """W_M = W_V W_O, [D, D], rank d_head.

        The message token k leaves behind is m_k = x~_k W_M + b_V W_O, exactly Trace.messages[layer, head, k];
        the head adds sum_k attn[q, k] m_k to the residual at q.
        """
        self._check_head(layer, head)
        return self.params.W_V[layer, head] @ self.params.W_O[layer, head]


def load(source: str | Path = "gpt2") -> Model:
    """Load a GPT-2 from a hub id ("gpt2", "openai-community/gpt2", "distilgpt2", ...) or a local directory."""
    directory = resolve(source)
    try:
        cfg = GPT2Config.from_file(directory / "config.json")
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            bins = sorted(p.name for p in directory.glob("*.bin"))
            hint = f" (found {', '.join(bins)}: minigpt2 never reads pickled weights)" if bins else ""
            raise LoadError(f"{directory}: no {WEIGHTS_FILE}{hint}")
        params = load_params(weights, cfg)
        tokenizer = GPT2Tokenizer.from_dir(directory, cfg.bos_token_id, cfg.d_vocab)
    except (ConfigError, WeightsError, TokenizerError) as e:
        raise LoadError(str(e)) from None
    return Model(cfg, params, tokenizer, source=str(source))
