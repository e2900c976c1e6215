"""Shared benchmark helpers: timing by median, the machine's measured limits, peer discovery, checkpoints."""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sgemm_gflops(n: int = 2048) -> float:
    """The machine's float32 matmul rate through numpy's BLAS (what the lower bounds use)."""
    a, b = np.ones((n, n), np.float32), np.ones((n, n), np.float32)
    return 2 * n ** 3 / median_time(lambda: a @ b, 3) / 1e9


def memory_gbs() -> float:
    """Streaming read bandwidth: numpy summing a 512 MiB array (bigger than the 480 MiB L3 seen here)."""
    a = np.ones(128 << 20, np.float32)
    return a.nbytes / median_time(a.sum, 3) / 1e9


def machine() -> str:
    blas = "?"
    try:
        from threadpoolctl import threadpool_info
        info = [d for d in threadpool_info() if d.get("user_api") == "blas"]
        if info:
            blas = f"{info[0].get('internal_api')} {info[0].get('version')} {info[0].get('architecture')} x{info[0].get('num_threads')}"
    except ImportError:
        pass
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, BLAS {blas}, "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")


def checkpoint(like: str = "gpt2") -> Path:
    """A synthetic checkpoint of the given shape, made once into the cache directory."""
    from analysis.search.diskcache import cache_dir
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import KNOWN_CONFIGS

    path = cache_dir() / "bench" / f"random-{like}"
    if not (path / "model.safetensors").is_file():
        make_checkpoint(KNOWN_CONFIGS[like], path, seed=0)
    return path


def table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]])
