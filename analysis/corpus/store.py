"""The store folder: per-shard commits while a run goes, the Parquet files at the end, and reading it back.

The folder follows the report folder's rules (analysis.report.writer), with its own manifest, MANIFEST: it
is new, empty, or an earlier store; any other non-empty folder is refused (with --force its files go
beside the others and nothing foreign is touched); a manifest that is not a store's is refused even with
--force. One run at a time holds the folder's lock. Each shard's result is committed as it arrives, as
one unit with a manifest that lists it with its size and SHA-256; so a run killed at any moment leaves
a manifest whose listed, unchanged shards are exactly the finished ones, and a rerun with the same model,
settings and inputs (the manifest's header) skips them. Another header is refused in one line, or, with
force, the earlier store's files are dropped and the run starts afresh. The end commits the Parquet files
and a manifest with state "complete", and drops the shard files, as one unit.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from minigpt2.atomic import Stage, sweep_stale
from minigpt2.errors import OutputError
from minigpt2.folder import LOCK_WAIT_S, Folder, close_removing, open_locked
from minigpt2.signals import guarded, held

from ..report.writer import MANIFEST_LIMIT, _check, _matches, _record, check_out, read_manifest
from .topk import Partial

MANIFEST = "minigpt2-corpus.json"
WHAT = "corpus store"
VERSION = 2                     # 2: heads rank queries from window position 2 on
TABLES = ("neurons.parquet", "neuron_stats.parquet", "heads.parquet")


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.npz"


def check_store_out(out, force: bool) -> Path:
    """The folder a store may go to, or OutputError; touches nothing (before any work)."""
    return check_out(out, force, MANIFEST, WHAT)


def _manifest_text(header: dict, state: str, records: list[dict]) -> str:
    return json.dumps({"tool": "minigpt2", "kind": "corpus", "version": VERSION, "state": state, **header,
                       "files": sorted(records, key=lambda r: r["name"])}, indent=1) + "\n"


def _header_of(folder: Folder) -> dict:
    try:
        data = json.loads(folder.read(MANIFEST, MANIFEST_LIMIT).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def differs(old: dict, new: dict) -> str | None:
    """What makes an earlier store's header another run's: None when it is this run's."""
    if old.get("kind") != "corpus":
        return "it was made by another minigpt2"
    if old.get("version") != VERSION:
        return f"it was made by another minigpt2 (store version {old.get('version')}; this one writes {VERSION})"
    if old.get("model", {}).get("fingerprint") != new["model"]["fingerprint"]:
        return "its model differs"
    if old.get("settings") != new["settings"]:
        was = old.get("settings") if isinstance(old.get("settings"), dict) else {}
        names = {"seq_len": "--seq-len", "top": "--top",
                 "shard_windows": "windows a shard (--shard-tokens / --seq-len)"}
        diff = [f"{names.get(k, k)} {was.get(k)} there, {v} here"
                for k, v in new["settings"].items() if was.get(k) != v]
        return f"its settings differ: {'; '.join(diff)}"
    strip = lambda fs: [(f.get("size"), f.get("sha256")) for f in fs or []]  # noqa: E731
    if strip(old.get("inputs")) != strip(new["inputs"]):
        return "its input files differ (names, order or content)"
    return None


class Store:
    """A store folder open and locked for a run: with Store(out, header, names, force) as s: ..."""

    def __init__(self, out, header: dict, n_shards: int, force: bool):
        self.path = check_store_out(out, force)
        self.header, self.n_shards = header, n_shards
        names = [shard_name(i) for i in range(n_shards)] + list(TABLES)
        with guarded():
            self.folder, self.made = open_locked(self.path, LOCK_WAIT_S, f"{self.path} is being written by another "
                                                 "minigpt2 run; run again once it has finished")
        try:
            sweep_stale(self.folder)
            earlier = _check(self.folder, names, force, MANIFEST, WHAT)
            ours = [r for r in earlier if _matches(self.folder, r["name"], earlier)]
            old = _header_of(self.folder) if self.folder.lstat(MANIFEST) else {}
            why = differs(old, header) if old else None
            if why and not force:
                raise OutputError(f"{self.path} holds a corpus store of another run: {why}; give the same "
                                  "model, settings and files to resume it, or add --force to start it afresh")
            fresh = bool(why) or force
            self.complete = (not fresh and old.get("state") == "complete"
                             and {r["name"] for r in ours} == set(TABLES))
            self.records = [] if fresh else [r for r in ours if r["name"].startswith("shard-")]
            if fresh and ours:                              # start afresh: the earlier store's files go
                with guarded(), Stage(self.folder) as stage:
                    step = stage.add(MANIFEST, lambda p: p.write_text(_manifest_text(header, "running", []),
                                                                      encoding="utf-8"))
                    stage.commit([*[r["name"] for r in ours if r["name"] != MANIFEST], step])
        except BaseException:
            with held():
                close_removing(self.folder, self.made)
            raise

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.folder.close()
            return
        with held():                        # a run that failed or was stopped before its first commit leaves
            close_removing(self.folder, self.made)      # no folder it made (only while empty: shards stay)

    @property
    def done(self) -> set[int]:
        return {int(r["name"][6:12]) for r in self.records}

    def commit_shard(self, i: int, part: Partial) -> None:
        """Shard i's result and a manifest listing it, as one unit (the manifest first: a kill between the
        two leaves it listed but absent, so it is computed again)."""
        buf = io.BytesIO()
        np.savez(buf, **part.arrays())
        data = buf.getvalue()
        with guarded(), Stage(self.folder) as stage:
            step = stage.add(shard_name(i), lambda p: p.write_bytes(data))
            rec = _record(shard_name(i), stage.path(step))
            records = [r for r in self.records if r["name"] != rec["name"]] + [rec]
            man = stage.add(MANIFEST, lambda p: p.write_text(_manifest_text(self.header, "running", records),
                                                             encoding="utf-8"))
            stage.commit([man, step])
        self.records = records

    def load_shard(self, i: int) -> Partial:
        st = self.folder.lstat(shard_name(i))
        data = self.folder.read(shard_name(i), st.st_size if st else 0)
        with np.load(io.BytesIO(data), allow_pickle=False) as a:
            return Partial.from_arrays(a)

    def finish(self, tables: dict) -> None:
        """Write the Parquet files {name: pyarrow table} and the complete manifest; drop the shards."""
        import pyarrow.parquet as pq

        with guarded(), Stage(self.folder) as stage:
            steps, new = [], []
            for name, table in tables.items():
                steps.append(stage.add(name, lambda p, t=table: pq.write_table(t, p)))
                new.append(_record(name, stage.path(steps[-1])))
            meanwhile = stage.add(MANIFEST, lambda p: p.write_text(
                _manifest_text(self.header, "running", self.records + new), encoding="utf-8"))
            final = stage.add(MANIFEST, lambda p: p.write_text(_manifest_text(self.header, "complete", new),
                                                               encoding="utf-8"))
            stage.commit([meanwhile, *steps, *[r["name"] for r in self.records], final])
        self.records, self.complete = [], True


class CorpusStore:
    """A finished store, read back: its header and its three tables (pyarrow), each file checked against
    the manifest's SHA-256 first."""

    def __init__(self, path):
        import pyarrow.parquet as pq

        self.path = Path(path)
        if not self.path.is_dir():
            raise OutputError(f"{self.path} is not a corpus store (not a folder); make one with minigpt2 corpus")
        with Folder(self.path) as folder:
            records = read_manifest(folder, MANIFEST)
            header = _header_of(folder)
            if records is None or header.get("kind") != "corpus" or header.get("state") != "complete":
                raise OutputError(f"{self.path} holds no finished corpus store (no complete {MANIFEST}); "
                                  "make or finish one with minigpt2 corpus")
            if header.get("version") != VERSION:
                raise OutputError(f"{self.path} was written by another minigpt2 (store version "
                                  f"{header.get('version')}); make it again with minigpt2 corpus")
            tables = {}
            for name in TABLES:
                if not _matches(folder, name, records):
                    raise OutputError(f"{self.path / name} is missing or has changed since the store was written")
                tables[name] = pq.read_table(folder.at(name))
        self.header = header
        self.neurons, self.neuron_stats, self.heads = (tables[n] for n in TABLES)
        self.fingerprint = header["model"]["fingerprint"]

    def check_model(self, fingerprint: str, source: str) -> None:
        if fingerprint != self.fingerprint:
            raise OutputError(f"the corpus store {self.path} was made with another model "
                              f"({self.header['model'].get('source')}) than {source}; use the same weights")

    def _rows(self, table, key: str, layer: int, index: int) -> list[dict]:
        import pyarrow.compute as pc

        t = table.filter(pc.and_(pc.equal(table["layer"], layer), pc.equal(table[key], index)))
        return t.to_pylist()

    def neuron(self, layer: int, neuron: int) -> tuple[list[dict], dict]:
        """(its top examples by rank, its stats)."""
        stats = self._rows(self.neuron_stats, "neuron", layer, neuron)
        return self._rows(self.neurons, "neuron", layer, neuron), (stats[0] if stats else {})

    def head(self, layer: int, head: int) -> list[dict]:
        return self._rows(self.heads, "head", layer, head)
