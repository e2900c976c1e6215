"""The corpus: documents read from .txt, .jsonl and .parquet files, tokenized whole, and cut into windows.

A .txt file is one document; a .jsonl file has a document per line (its "text" field); a .parquet file a
document per row (its `text` column). A document's number (`doc`) is its line or row in its file, from 0,
blank lines and null rows (or null "text") included, so it points back to the source. Every document's tokens (no BOS)
are concatenated in file order into one array: a token's place in it, its global index, orders every
example (earlier file, then earlier document, then earlier token) and keys the top-k ties.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minigpt2.errors import InputError
from minigpt2.safeio import open_regular


@dataclass(frozen=True)
class Corpus:
    files: list[dict]           # per input file: name (as given), size, sha256, documents, tokens
    ids: np.ndarray             # [N] int32, every document's tokens (no BOS), in order
    doc_start: np.ndarray       # [n_docs + 1] int64, where each tokenized document starts in ids (last: N)
    doc_file: np.ndarray        # [n_docs] int32, the file each document came from
    doc_number: np.ndarray      # [n_docs] int64, its line or row in that file

    @property
    def n_tokens(self) -> int:
        return int(self.ids.shape[0])

    def locate(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global token indices g -> (document, token index in that document)."""
        d = np.searchsorted(self.doc_start, g, side="right") - 1
        return d, g - self.doc_start[d]


def _text(data: bytes, name: str, where: str = "") -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{name}{where} is not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}; "
                         "give UTF-8 text") from None


def _documents(path: str, data: bytes) -> list[tuple[int, str]]:
    """[(doc number, text)] of one file, by its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return _parquet(path, data)
    if data.startswith(b"\xef\xbb\xbf"):                 # a UTF-8 byte-order mark is no text
        data = data[3:]
    if suffix != ".jsonl":
        return [(0, _text(data, path))]
    docs = []
    for i, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            record = json.loads(_text(line, path, f" line {i + 1}"))
        except (ValueError, RecursionError):
            raise InputError(f"{path} line {i + 1} is not JSON; a .jsonl file holds one JSON object per "
                             'line, with a "text" field') from None
        if not isinstance(record, dict) or "text" not in record:
            raise InputError(f'{path} line {i + 1} has no "text" field')
        if record["text"] is None:                          # skipped, as a Parquet file's null rows are
            continue
        if not isinstance(record["text"], str):
            raise InputError(f'{path} line {i + 1}: "text" is {type(record["text"]).__name__}, not a string')
        docs.append((i, record["text"]))
    return docs


def _parquet(path: str, data: bytes) -> list[tuple[int, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(f"{path} is not a Parquet file pyarrow can read: {str(e).splitlines()[0][:200]}") from None
    if "text" not in table.column_names:
        raise InputError(f"{path} has no `text` column (its columns: {', '.join(table.column_names[:10]) or 'none'})")
    col = table.column("text")
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise InputError(f"{path}: column `text` holds {col.type}, not strings")
    return [(i, t) for i, t in enumerate(col.to_pylist()) if t is not None]


def read_corpus(paths: list[str], tokenizer) -> Corpus:
    """Every file read (a regular file, UTF-8), hashed, and every document encoded whole without BOS.
    InputError naming the file for bad input, and for a corpus with no tokens at all."""
    if not paths:
        raise InputError("name at least one corpus file (.txt, .jsonl or .parquet)")
    files, chunks, starts, doc_file, doc_number, n = [], [], [0], [], [], 0
    for fi, path in enumerate(paths):
        path = os.fspath(path)
        with open_regular(path) as f:
            data = f.read()
        tokens_before, docs = n, _documents(path, data)
        for number, text in docs:
            ids = tokenizer.encode(text, bos=False) if text else np.zeros(0, np.int64)
            if ids.size == 0:
                continue
            chunks.append(ids.astype(np.int32))
            n += ids.size
            starts.append(n)
            doc_file.append(fi)
            doc_number.append(number)
        files.append({"name": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "documents": len(docs), "tokens": n - tokens_before})
    if n == 0:
        verb = "holds" if len(paths) == 1 else "hold"
        raise InputError(f"the corpus is empty: {', '.join(map(os.fspath, paths[:3]))}"
                         f"{' ...' if len(paths) > 3 else ''} {verb} no text that makes a token")
    return Corpus(files=files, ids=np.concatenate(chunks), doc_start=np.asarray(starts, np.int64),
                  doc_file=np.asarray(doc_file, np.int32), doc_number=np.asarray(doc_number, np.int64))


def windows(corpus: Corpus, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(start [W], length [W]) of every window: each document cut into consecutive runs of seq_len tokens
    (its last may be shorter), in order. Windows never cross documents."""
    starts, lengths = [], []
    for a, b in zip(corpus.doc_start[:-1], corpus.doc_start[1:]):
        s = np.arange(a, b, seq_len, dtype=np.int64)
        starts.append(s)
        lengths.append(np.minimum(seq_len, b - s))
    return np.concatenate(starts), np.concatenate(lengths)


def shards(n_windows: int, per_shard: int) -> list[tuple[int, int]]:
    """[(first window, end window)] of consecutive groups of per_shard windows: fixed by the corpus and the
    settings alone, never by the workers, so every cluster computes the same shards."""
    return [(a, min(a + per_shard, n_windows)) for a in range(0, n_windows, per_shard)]
