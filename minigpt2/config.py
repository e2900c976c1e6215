"""GPT2Config: the few numbers that fix a GPT-2's shapes, read from HF config.json."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError
from .safeio import brief, load_json

MAX_SIZE = 1 << 20   # no GPT-2 size comes near this; a bigger one is a typo, and would only fail later, slowly
RANDOM_KEY = "minigpt2_random_weights"   # config.json: true in the checkpoints make-checkpoint writes
MAX_BYTES = 16 << 20  # a config.json is about 1 KB; more is not one (and is not read into memory)


def _int(hf: dict, key: str, where: str) -> int:
    """hf[key] as a positive int: a JSON integer, never a bool, float or string."""
    v = hf[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where}: {key} must be an integer, got {brief(v)}")
    if not 0 < v <= MAX_SIZE:
        raise ConfigError(f"{where}: {key} must be in 1..{MAX_SIZE}, got {brief(v)}")
    return v


def _name(v) -> str:
    """A config value that should be a short name, for a message: repr'd, or briefly, whatever it is."""
    return repr(v) if isinstance(v, str) and len(v) <= 60 else brief(v)


@dataclass(frozen=True)
class GPT2Config:
    n_layers: int        # L
    n_heads: int         # H
    d_model: int         # D
    d_mlp: int           # m (HF n_inner, default 4 * D)
    d_vocab: int         # V
    n_ctx: int           # longest sequence (HF n_positions)
    layer_norm_eps: float = 1e-5
    bos_token_id: int = 50256
    random_weights: bool = False   # made by make-checkpoint (config.json's RANDOM_KEY: HF ignores unknown keys)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_hf(cls, hf: dict, where: str = "config.json") -> "GPT2Config":
        """Validate a Hugging Face GPT-2 config dict and keep what the forward pass needs."""
        if hf.get("model_type") != "gpt2":
            raise ConfigError(f"{where}: model_type is {_name(hf.get('model_type'))}, not 'gpt2'")
        act = hf.get("activation_function", "gelu_new")
        if act != "gelu_new":
            raise ConfigError(f"{where}: activation_function {_name(act)} is not supported (only 'gelu_new')")
        for flag in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
            if hf.get(flag):
                raise ConfigError(f"{where}: {flag}=true is not supported")
        if hf.get("scale_attn_weights") is False:
            raise ConfigError(f"{where}: scale_attn_weights=false is not supported")
        try:
            n_embd = _int(hf, "n_embd", where)
            n_inner = hf.get("n_inner")
            eps = hf.get("layer_norm_epsilon", 1e-5)
            bos = hf.get("bos_token_id", 50256)
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
                raise ConfigError(f"{where}: layer_norm_epsilon must be a finite number > 0, got {brief(eps)}")
            if isinstance(bos, bool) or not isinstance(bos, int):
                raise ConfigError(f"{where}: bos_token_id must be an integer, got {brief(bos)}")
            cfg = cls(
                n_layers=_int(hf, "n_layer", where),
                n_heads=_int(hf, "n_head", where),
                d_model=n_embd,
                d_mlp=4 * n_embd if n_inner is None else _int(hf, "n_inner", where),
                d_vocab=_int(hf, "vocab_size", where),
                n_ctx=_int(hf, "n_positions", where),
                layer_norm_eps=float(eps),
                bos_token_id=bos,
                random_weights=hf.get(RANDOM_KEY) is True,
            )
        except KeyError as e:
            raise ConfigError(f"{where}: missing key {e.args[0]!r}") from None
        if cfg.d_model % cfg.n_heads:
            raise ConfigError(f"{where}: n_embd={cfg.d_model} is not divisible by n_head={cfg.n_heads}")
        if not 0 <= cfg.bos_token_id < cfg.d_vocab:
            raise ConfigError(f"{where}: bos_token_id={cfg.bos_token_id} is outside the vocabulary")
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> "GPT2Config":
        path = Path(path)
        try:
            hf = load_json(path, MAX_BYTES)
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
        except ValueError as e:             # not JSON, nested too deeply, an integer of thousands of digits
            raise ConfigError(f"{path}: not valid JSON ({' '.join(str(e).split())[:200]}); "
                              "replace it with the model's own config.json") from None
        except OSError as e:
            raise ConfigError(f"{path}: {e.strerror or e}") from None
        if not isinstance(hf, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return cls.from_hf(hf, where=str(path))

    def to_hf(self) -> dict:
        """The config.json that transformers' GPT2LMHeadModel reads."""
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "n_layer": self.n_layers,
            "n_head": self.n_heads,
            "n_embd": self.d_model,
            "n_inner": self.d_mlp,
            "vocab_size": self.d_vocab,
            "n_positions": self.n_ctx,
            "n_ctx": self.n_ctx,
            "layer_norm_epsilon": self.layer_norm_eps,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.bos_token_id,
            "tie_word_embeddings": True,
        } | ({RANDOM_KEY: True} if self.random_weights else {})

    def describe(self) -> str:
        """Every field (random_weights only when true: the caches' keys stay those of earlier versions)."""
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items() if k != "random_weights" or v)


# Shapes of the public checkpoints (from their hub config.json files), for make-checkpoint.
KNOWN_CONFIGS = {
    "gpt2": GPT2Config(n_layers=12, n_heads=12, d_model=768, d_mlp=3072, d_vocab=50257, n_ctx=1024),
    "distilgpt2": GPT2Config(n_layers=6, n_heads=12, d_model=768, d_mlp=3072, d_vocab=50257, n_ctx=1024),
    "gpt2-medium": GPT2Config(n_layers=24, n_heads=16, d_model=1024, d_mlp=4096, d_vocab=50257, n_ctx=1024),
    "gpt2-large": GPT2Config(n_layers=36, n_heads=20, d_model=1280, d_mlp=5120, d_vocab=50257, n_ctx=1024),
    "gpt2-xl": GPT2Config(n_layers=48, n_heads=25, d_model=1600, d_mlp=6400, d_vocab=50257, n_ctx=1024),
    # Real vocabulary, toy width: for tests and quick offline demos.
    "tiny": GPT2Config(n_layers=2, n_heads=4, d_model=64, d_mlp=256, d_vocab=50257, n_ctx=256),
}
