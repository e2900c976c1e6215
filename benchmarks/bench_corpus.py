"""minigpt2 corpus: tokens/s at 1 and 2 local workers, the overhead against the bare forward pass of the same
windows, and each worker's peak memory; then the 100M-token estimate from the measured per-worker rate.

    python benchmarks/bench_corpus.py [--like gpt2] [--tokens 65536] [--seq-len 64] [--top 20] [--workers 1 2]

The corpus is synthetic (documents of random GPT-2 tokens, decoded and re-encoded: the forward pass does not
care what the words mean). The bare pass is model.logits on each window ([BOS] + seq-len tokens) in this
process, with BLAS held to one thread as in a worker. Each corpus run reaches its own LocalCluster through
--scheduler's code path (build_store with an address), so the workers can be asked their peak RSS after it.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkpoint, machine, table  # noqa: E402

import minigpt2  # noqa: E402


def synthetic_corpus(model, folder: Path, n_tokens: int, seed: int = 0) -> Path:
    """A .jsonl of documents of 200-2,000 random tokens each, about n_tokens in all."""
    rng = np.random.default_rng(seed)
    lines, n = [], 0
    while n < n_tokens:
        size = int(rng.integers(200, 2000))
        ids = rng.integers(0, model.cfg.d_vocab - 1, size)
        lines.append(json.dumps({"text": model.decode(ids)}))
        n += size
    path = folder / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bare_forward(model, corpus_path: Path, seq_len: int) -> tuple[float, int]:
    """(seconds, tokens) of model.logits over every window, one BLAS thread."""
    from threadpoolctl import threadpool_limits

    from analysis.corpus.inputs import read_corpus, windows

    corpus = read_corpus([str(corpus_path)], model.tokenizer)
    starts, lengths = windows(corpus, seq_len)
    bos = model.cfg.bos_token_id
    with threadpool_limits(1):
        model.logits(np.concatenate([[bos], corpus.ids[:seq_len]]))            # warm up
        t = time.perf_counter()
        for s, n in zip(starts.tolist(), lengths.tolist()):
            model.logits(np.concatenate([[bos], corpus.ids[s:s + n]]).astype(np.int64))
        return time.perf_counter() - t, int(lengths.sum())


def corpus_run(model, src: str, corpus_path: Path, out: Path, workers: int, seq_len: int, top: int,
               shard_tokens: int) -> dict:
    from distributed import Client, LocalCluster

    from analysis.corpus.engine import build_store

    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0",
                      silence_logs=logging.ERROR) as lc, Client(lc) as client:
        t = time.perf_counter()
        header = build_store([str(corpus_path)], model, src, out, seq_len=seq_len, top=top,
                             scheduler=lc.scheduler_address, shard_tokens=shard_tokens, say=lambda s: None)
        total = time.perf_counter() - t
        rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)      # KiB, per worker
    size = sum(p.stat().st_size for p in out.iterdir())
    return {"run_s": header["run_s"], "total_s": total, "tokens": header["tokens"]["tokens"],
            "rss_mib": max(rss.values()) / 1024, "store_mb": size / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--like", default="gpt2")
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    src = str(checkpoint(args.like))
    model = minigpt2.load(src)
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = synthetic_corpus(model, tmp, args.tokens)
        bare_s, n = bare_forward(model, path, args.seq_len)
        shard_tokens = max(args.seq_len, n // (4 * max(args.workers)))                 # >= 4 shards a worker
        rows, rates = [], {}
        for w in args.workers:
            r = corpus_run(model, src, path, tmp / f"store-{w}", w, args.seq_len, args.top, shard_tokens)
            rates[w] = r["tokens"] / r["run_s"]
            rows.append([w, f"{r['tokens']:,}", f"{r['run_s']:.1f}", f"{r['total_s']:.1f}", f"{rates[w]:,.0f}",
                         f"{rates[w] / rates[args.workers[0]]:.2f}x",
                         f"{n / bare_s / rates[w]:.2f}x" if w == 1 else "",
                         f"{r['rss_mib']:,.0f}", f"{r['store_mb']:.1f}"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{args.like}, {n:,} tokens in windows of {args.seq_len}, top {args.top}; bare forward (model.logits, "
          f"1 BLAS thread): {n / bare_s:,.0f} tokens/s; client peak RSS {peak:,.0f} MiB\n")
    print(table(["workers", "tokens", "map s", "total s", "tokens/s", "scaling", "vs bare forward",
                 "peak RSS/worker MiB", "store MB"], rows))
    per_worker = rates[args.workers[0]] / args.workers[0]
    for n_workers in (2, 16, 64):
        days = 100e6 / (n_workers * per_worker) / 86400
        print(f"100M tokens on {n_workers} workers at {per_worker:,.0f} tokens/s each: {days:.2f} days")


if __name__ == "__main__":
    main()
