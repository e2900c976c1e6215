"""Finding a model: a local directory as is, or a hub id downloaded (or found in the HF cache).

Only config.json, model.safetensors and the tokenizer files are fetched: never a pickled .bin.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from .errors import LoadError

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))

OFFLINE_HINT = ("If you are offline, pass a local directory holding config.json, {weights} and tokenizer.json "
                "(or vocab.json + merges.txt), e.g. one saved by save_pretrained, or random weights from "
                "`minigpt2 make-checkpoint --like gpt2 --out DIR`.").format(weights=WEIGHTS_FILE)


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached, found in a few seconds (huggingface_hub itself retries for ~25 s).

    None when it answers, or when the check cannot judge: under HF_HUB_OFFLINE (the hub library then
    fails at once) or behind an HTTP(S) proxy.
    """
    if os.environ.get("HF_HUB_OFFLINE") or any(os.environ.get(v) for v in
                                                ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=5).close()
        return None
    except OSError as e:
        return f"cannot reach {url.hostname}: {e}"


class _Fetcher:
    """hf_hub_download with the cache tried first, and the hub's reachability checked once, before the
    first download (not per file)."""

    def __init__(self, repo_id: str):
        self.repo_id = repo_id
        self.reachable_checked = False

    def __call__(self, filename: str) -> Path:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:  # the cache first: no network round trip when the files are already here
            return Path(hf_hub_download(self.repo_id, filename, local_files_only=True))
        except LocalEntryNotFoundError:
            pass
        if not self.reachable_checked:
            self.reachable_checked = True
            reason = hub_unreachable()
            if reason:
                raise LoadError(f"could not download {self.repo_id!r} from the Hugging Face hub and it is not "
                                f"in the local cache ({reason}). {OFFLINE_HINT}")
        return Path(hf_hub_download(self.repo_id, filename))


def download(repo_id: str) -> Path:
    """Fetch config, safetensors weights and tokenizer into the HF cache; return the folder."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    fetch = _Fetcher(repo_id)
    try:
        config = fetch("config.json")
        try:
            fetch(WEIGHTS_FILE)
        except EntryNotFoundError:   # the repo answered: it has no such file
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
    except RepositoryNotFoundError:
        raise LoadError(f"{repo_id!r} is neither a local directory nor a model on the Hugging Face hub") from None
    except (OSError, HfHubHTTPError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LoadError(f"could not download {repo_id!r} from the Hugging Face hub and it is not in the local "
                        f"cache ({first[:200]}). {OFFLINE_HINT}") from None


def resolve(source: str | Path) -> Path:
    """A local directory as is; anything else is a hub id, downloaded (or found in the HF cache)."""
    text = str(source)
    if not text:
        raise LoadError("--model is empty: give a hub id such as gpt2, or a local directory")
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise LoadError(f"{source}: expected a directory holding config.json and {WEIGHTS_FILE}")
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise LoadError(f"{source}: no such directory")
    return download(text)
