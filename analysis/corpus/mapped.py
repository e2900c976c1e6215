"""A worker's model, memory-mapped: the split weights kept once per machine as .npy files in the cache folder,
so that every worker process on a machine shares one copy of them in the page cache.

The first worker to need a model loads it from its folder (minigpt2.load), checks its fingerprint against the
client's, and writes each Params array to $MINIGPT2_CACHE/corpus-params-FINGERPRINT/ (atomically); every
worker then maps those files read-only. A mapped set is used only when the fingerprint computed from it (and
the folder's config and tokenizer) is the client's, so a damaged or foreign file is never used: it is written
again from the model's folder. Where the cache folder cannot be written, the loaded copy is used as it is.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np

from minigpt2.atomic import atomic_file
from minigpt2.errors import LoadError
from minigpt2.weights import Params

from ..search.diskcache import cache_dir


def _folder(fingerprint: str) -> Path:
    return cache_dir() / f"corpus-params-{fingerprint}"


def _mapped(source: str, folder: Path):
    """The model with its weights mapped from folder, or None when a file is missing or unreadable."""
    from minigpt2.config import GPT2Config
    from minigpt2.model import Model
    from minigpt2.tokenizer import GPT2Tokenizer

    try:
        arrays = {f.name: np.asarray(np.load(folder / f"{f.name}.npy", mmap_mode="r", allow_pickle=False))
                  for f in fields(Params)}                  # plain read-only views of the maps, not np.memmap
    except (OSError, ValueError):
        return None
    cfg = GPT2Config.from_file(Path(source) / "config.json")
    return Model(cfg, Params(**arrays), GPT2Tokenizer.from_dir(source, cfg.bos_token_id, cfg.d_vocab), source)


def _save(model, folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for f in fields(Params):
            with atomic_file(folder / f"{f.name}.npy") as tmp, open(tmp, "wb") as out:
                np.save(out, getattr(model.params, f.name))
        return True
    except OSError:
        return False


def load_mapped(source: str, fingerprint: str, fingerprint_of):
    """The model at source with memory-mapped weights whose fingerprint_of(model) is fingerprint; LoadError
    when the folder holds another model than the client's."""
    from minigpt2 import load

    folder = _folder(fingerprint)
    model = _mapped(source, folder)
    if model is not None and fingerprint_of(model) == fingerprint:
        return model
    model = load(source)
    if fingerprint_of(model) != fingerprint:
        raise LoadError(f"a worker loaded other weights from {source} than the client did; every worker "
                        "must see the same model files at that path")
    if _save(model, folder):
        again = _mapped(source, folder)
        if again is not None and fingerprint_of(again) == fingerprint:
            return again
    return model
