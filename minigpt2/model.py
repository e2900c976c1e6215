"""Model: load a GPT-2 (hub id or local directory), encode text, run it, and read its merged matrices."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import forward
from .config import ConfigError, GPT2Config
from .tokenizer import GPT2Tokenizer, TokenizerError
from .trace import Trace
from .weights import Params, WeightsError, load_params


class LoadError(RuntimeError):
    """The model could not be found, downloaded or read. The message says what to do."""


WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))


OFFLINE_HINT = ("If you are offline, pass a local directory holding config.json, {weights} and tokenizer.json "
                "(or vocab.json + merges.txt), e.g. one saved by save_pretrained, or random weights from "
                "`minigpt2 make-checkpoint --like gpt2 --out DIR`.").format(weights=WEIGHTS_FILE)


def _hub_unreachable() -> str | None:
    """Why the hub cannot be reached, found in a few seconds (huggingface_hub itself retries for ~25 s).

    Skipped (None) under HF_HUB_OFFLINE (the hub library then fails at once) or an HTTP(S) proxy.
    """
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE") or any(os.environ.get(v) for v in
                                                ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=5).close()
        return None
    except OSError as e:
        return f"cannot reach {url.hostname}: {e}"


def _hub_download(repo_id: str) -> Path:
    """Fetch config, safetensors weights and tokenizer (never a pickle) into the HF cache; return the folder."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    checked = []

    def fetch(filename: str) -> Path:
        try:  # the cache first: no network round trip when the files are already here
            return Path(hf_hub_download(repo_id, filename, local_files_only=True))
        except (EntryNotFoundError, FileNotFoundError):
            pass
        if not checked:
            checked.append(True)
            reason = _hub_unreachable()
            if reason:
                raise LoadError(f"could not download {repo_id!r} from the Hugging Face hub and it is not in "
                                f"the local cache ({reason}). {OFFLINE_HINT}")
        return Path(hf_hub_download(repo_id, filename))

    try:
        config = fetch("config.json")
        try:
            fetch(WEIGHTS_FILE)
        except EntryNotFoundError as e:
            if "local cache" in str(e).lower():
                raise
            raise LoadError(f"hub repo {repo_id!r} has no {WEIGHTS_FILE}; minigpt2 reads safetensors "
                            "only (never pickled .bin files)") from None
        for names in TOKENIZER_FILES:
            try:
                for name in names:
                    fetch(name)
                break
            except EntryNotFoundError:
                continue
        return config.parent
    except LoadError:
        raise
    except RepositoryNotFoundError:
        raise LoadError(f"{repo_id!r} is neither a local directory nor a model on the Hugging Face hub") from None
    except (OSError, HfHubHTTPError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LoadError(f"could not download {repo_id!r} from the Hugging Face hub and it is not in the local "
                        f"cache ({first[:200]}). {OFFLINE_HINT}") from None


def resolve(source: str | Path) -> Path:
    """A local directory as is; anything else is a hub id, downloaded (or found in the HF cache)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise LoadError(f"{source}: expected a directory holding config.json and {WEIGHTS_FILE}")
    text = str(source)
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or not text:
        raise LoadError(f"{source}: no such directory")
    return _hub_download(text)


class Model:
    """A GPT-2: its config, its per-head weights and its tokenizer."""

    def __init__(self, cfg: GPT2Config, params: Params, tokenizer: GPT2Tokenizer, source: str = ""):
        self.cfg = cfg
        self.params = params
        self.tokenizer = tokenizer
        self.source = source

    # text <-> ids
    def encode(self, text: str, bos: bool = True) -> np.ndarray:
        """Token ids [T]; with bos (the default), <|endoftext|> (id 50256) comes first, as in the essay."""
        return self.tokenizer.encode(text, bos=bos)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def token_strings(self, ids) -> list[str]:
        return self.tokenizer.token_strings(ids)

    # forward
    def run(self, ids) -> Trace:
        """Forward pass recording every pattern, message, attention, activation and residual."""
        return forward.run(self.params, self.cfg, ids)

    def logits(self, ids) -> np.ndarray:
        """Forward pass recording nothing: [T, V]."""
        return forward.logits(self.params, self.cfg, ids)

    def generate(self, ids, n_new: int) -> np.ndarray:
        """Greedy decoding: ids followed by n_new argmax tokens (stops at the context length)."""
        ids = forward.check_ids(ids, self.cfg)
        if n_new < 0:
            raise ValueError(f"number of new tokens must be >= 0, got {n_new}")
        for _ in range(min(n_new, self.cfg.n_ctx - ids.shape[0])):
            ids = np.append(ids, np.argmax(self.logits(ids)[-1]))
        return ids

    # merged matrices
    def _check_head(self, layer: int, head: int) -> None:
        if not (0 <= layer < self.cfg.n_layers and 0 <= head < self.cfg.n_heads):
            raise IndexError(f"no head {layer}-{head}: layers 0..{self.cfg.n_layers - 1}, "
                             f"heads 0..{self.cfg.n_heads - 1}")

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
