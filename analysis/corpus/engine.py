"""minigpt2 corpus: the run. The documents are read and windowed here (the client), the shards run on a Dask
cluster, each result is committed to the store as it arrives, and the shards are tree-merged at the end.

Without a scheduler address it starts a LocalCluster of `workers` processes (one thread each); with one it
connects to an existing cluster (`dask scheduler` / `dask worker`): the same code path. Workers receive a
model folder path (a hub id is resolved to its local snapshot here; on other machines the same path must
hold the same files, which each worker checks by fingerprint). A worker lost mid-run has its shards
rescheduled by Dask; each shard is committed once, by its number, so no example is counted twice. When an
existing cluster has no workers left, Dask (and the run) waits for new ones, and the run says so.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from contextlib import contextmanager


from minigpt2.errors import InputError, OutputError

from .inputs import read_corpus, shards, windows
from .records import Shown, head_table, neuron_tables
from .shard import model_fingerprint, run_shard
from .store import Store, check_store_out
from .topk import tree_merge

SHARD_TOKENS = 1 << 18          # tokens per shard (whole windows): a few minutes of GPT-2 small on one core
IN_FLIGHT = 3                   # shards submitted per worker at a time (its next ones wait in the client)
NO_WORKERS_S = 15.0             # a --scheduler run says so when its cluster had no workers at two checks this apart


@contextmanager
def cluster(workers: int | None, scheduler: str | None):
    """A dask.distributed Client: of a new LocalCluster, or of the cluster at scheduler."""
    from distributed import Client, LocalCluster

    from .quiet import QuietSigint

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise OutputError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as lc, Client(lc) as client:
        client.local = True
        client.register_plugin(QuietSigint(), name="minigpt2-quiet-sigint")   # Ctrl-C stops this process only
        yield client


def _dashboard(client) -> str | None:
    """The dashboard's address: a remote scheduler's, or the local one's where bokeh (which draws it) is
    installed."""
    import importlib.util

    if getattr(client, "local", False) and importlib.util.find_spec("bokeh") is None:
        return None
    return client.dashboard_link if "dashboard" in client.scheduler_info().get("services", {}) else None


def build_store(files, model, source_dir: str, out, seq_len: int = 64, top: int = 20, workers: int | None = None,
                scheduler: str | None = None, force: bool = False, shard_tokens: int = SHARD_TOKENS,
                progress: bool = False, say=print) -> dict:
    """Build (or resume, or find complete) the store at out. Returns the manifest header with timings."""
    cfg = model.cfg
    if not 1 <= seq_len or seq_len + 1 > cfg.n_ctx:
        raise InputError(f"--seq-len {seq_len} does not fit the model's context: each window runs as "
                         f"<|endoftext|> + seq-len tokens, so seq-len must be 1 to {cfg.n_ctx - 1}")
    check_store_out(out, force)                        # before reading anything: a bad --out costs nothing
    corpus = read_corpus(files, model.tokenizer)
    starts, lengths = windows(corpus, seq_len)
    plan = shards(len(starts), max(1, shard_tokens // seq_len))
    fp = model_fingerprint(model)
    header = {"model": {"source": str(model.source), "fingerprint": fp, "config": cfg.describe()},
              "settings": {"seq_len": seq_len, "top": top, "shard_windows": max(1, shard_tokens // seq_len)},
              "inputs": corpus.files,
              "tokens": {"documents": int(corpus.doc_file.size), "tokens": corpus.n_tokens,
                         "windows": int(starts.size), "shards": len(plan)}}
    with Store(out, header, len(plan), force) as store:
        if store.complete:
            say(f"{store.path}: the store is complete for this model, these settings and these files; nothing "
                "to do (--force recomputes it)")
            return header
        todo = [i for i in range(len(plan)) if i not in store.done]
        shard_tokens_of = [int(lengths[a:b].sum()) for a, b in plan]
        t0 = time.perf_counter()
        if todo:
            _run(store, todo, plan, corpus, starts, lengths, source_dir, fp, top, workers, scheduler,
                 shard_tokens_of, progress, say)
        run_s = time.perf_counter() - t0
        final = tree_merge((store.load_shard(i) for i in range(len(plan))), top)
        shown = Shown(model.tokenizer)
        neurons, stats = neuron_tables(final, corpus, shown, cfg.n_layers, seq_len)
        heads = head_table(final, corpus, shown, cfg.n_heads, seq_len, cfg.n_ctx)
        store.finish({"neurons.parquet": neurons, "neuron_stats.parquet": stats, "heads.parquet": heads})
    done = sum(shard_tokens_of[i] for i in todo)
    rate = f"{done:,} tokens run at {done / max(run_s, 1e-9):,.0f} tokens/s" if done else "nothing left to run"
    docs = header["tokens"]["documents"]
    resumed = f"; {len(plan) - len(todo)} of {len(plan)} shards were done before" if len(todo) < len(plan) else ""
    say(f"{store.path}: {corpus.n_tokens:,} tokens in {docs:,} document{'s' * (docs != 1)} ({rate}{resumed})")
    return {**header, "run_s": run_s}


def _slots(client) -> int:
    """Shards to keep in flight: IN_FLIGHT per worker thread now in the cluster (workers may join later)."""
    return IN_FLIGHT * max(1, sum(client.nthreads().values()))


def _watch_workers(client, scheduler: str, say, stop: threading.Event, every: float) -> None:
    """While the run goes: say once, each time it happens, that the cluster at scheduler has had no workers at
    two checks `every` seconds apart. (A remote cluster's workers may all be gone: Dask waits for new ones to
    join, and so does the run, which would otherwise wait without a word.)"""
    said, last = False, 1                           # said for this stretch without workers; workers at the last check
    while not stop.wait(every):
        try:
            n = len(client.nthreads())
        except Exception:                           # noqa: BLE001 (the client is closing: the run is ending)
            return
        if n == 0 and last == 0 and not said:
            say(f"waiting for Dask workers: the cluster at {scheduler} has none (start some with `dask worker "
                f"{scheduler}`); finished shards are kept: Ctrl-C stops, and the same command resumes")
            said = True
        said, last = said and n == 0, n


def _run(store, todo, plan, corpus, starts, lengths, source_dir, fp, top, workers, scheduler, sizes, progress,
         say) -> None:
    from distributed import as_completed
    from tqdm.auto import tqdm

    run_id = hashlib.blake2b(json.dumps(store.header, sort_keys=True).encode(), digest_size=8).hexdigest()
    topic = f"minigpt2-corpus-{run_id}" if progress else None
    with cluster(workers, scheduler) as client:                # (a task's key: this run's header and shard)
        link = _dashboard(client)
        if link:
            say(f"Dask dashboard: {link}")
        pending, futures, running = iter(todo), {}, as_completed()

        def submit() -> None:                  # a few shards a worker in flight: the client holds the rest
            i = next(pending, None)
            if i is not None:
                a, b = plan[i]
                ids = corpus.ids[starts[a]:starts[b - 1] + lengths[b - 1]]     # a shard's windows are consecutive
                fut = client.submit(run_shard, source_dir, fp, ids, starts[a:b], lengths[a:b], top, topic, i,
                                    key=f"minigpt2-corpus-{run_id}-{i}")
                futures[fut] = i
                running.add(fut)

        for _ in range(_slots(client)):
            submit()
        total = int(lengths.sum())
        with tqdm(total=total, initial=total - sum(sizes[i] for i in todo), unit="tok", unit_scale=True,
                  desc="corpus", disable=not progress, file=sys.stderr, smoothing=0.1) as bar:
            shown, lock = dict.fromkeys(todo, 0), threading.Lock()       # tokens the bar counts, per shard

            def advance(i: int, done: int) -> None:                       # never backwards, never past a shard
                with lock:
                    step = min(done, sizes[i]) - shown.get(i, sizes[i])
                    if step > 0:
                        shown[i] += step
                        bar.update(step)

            if progress:                                                  # workers say how far each shard is
                client.subscribe_topic(topic, lambda event: advance(*event[1]))
            stop = threading.Event()
            if scheduler:
                threading.Thread(target=_watch_workers, args=(client, scheduler, say, stop, NO_WORKERS_S),
                                 daemon=True).start()
            try:
                for fut in running:
                    i = futures.pop(fut)
                    store.commit_shard(i, fut.result())
                    advance(i, sizes[i])
                    fut.release()
                    while len(futures) < _slots(client):
                        before = len(futures)
                        submit()
                        if len(futures) == before:
                            break
            finally:
                stop.set()

