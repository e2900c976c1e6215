"""The page's neuron cards: every neuron's static meanings and this prompt's activations, as compact arrays.

The neurons table lists every neuron in its CSV, but the page shows only the strongest; the card lets the
jump box open any neuron (`L2 N666`). Its words are indices into one word list (each word once), so the
page carries 2 bytes per word instead of the word; report.pagedata encodes these arrays for the page.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..report.layout import TOKEN_COLUMNS
from .context import Context, NeuronMatches

CARD_LISTS = ("input words", "output words", "negative output words")
CARD_WORDS = 5        # words per list for every neuron (a listed neuron's card shows the neurons tab's k words):
                      #   each word more costs 0.3 MB of page for GPT-2 small's 36,864 neurons


@dataclass(frozen=True)
class NeuronCards:
    words: list[str]            # [W] each word once, shown as every tab shows words (·word)
    ids: np.ndarray             # [L, m, 3, CARD_WORDS] uint16 indices into words: input, output, negative output
    high_bias: np.ndarray       # [L, m, 3] bool: that list's matches are "(high bias)" (the card says so)
    acts: np.ndarray | None     # [L, T, m] float32 this prompt's activations, or None beyond TOKEN_COLUMNS tokens
                                #   (then mlp_acts.npy has them)
    tokens: list[str]           # [T] the prompt's tokens as column labels (0:·The, ...)


def neuron_cards(ctx: Context, nm: NeuronMatches) -> NeuronCards | None:
    """The cards' data, or None when the word list would not fit 2 bytes an index (no GPT-2 comes near)."""
    lists = (nm.inputs, nm.outputs, nm.negatives)
    ids = np.stack([m.ids[..., :CARD_WORDS] for m in lists], axis=2)    # [L, m, 3, <=CARD_WORDS] vocabulary ids
    used, index = np.unique(ids, return_inverse=True)
    if len(used) > 65535:
        return None
    shown = ctx.vocab.shown
    acts = ctx.trace.mlp_acts if ctx.trace.n_tokens <= TOKEN_COLUMNS else None
    return NeuronCards(words=[shown[i] for i in used.tolist()], ids=index.reshape(ids.shape).astype(np.uint16),
                       high_bias=np.stack([m.high_bias for m in lists], axis=2), acts=acts,
                       tokens=ctx.token_columns())
