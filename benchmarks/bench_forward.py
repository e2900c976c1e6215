"""model.run (full trace) and model.logits against HF transformers GPT2LMHeadModel on the same weights.

    python benchmarks/bench_forward.py [--like gpt2] [--tokens 8 128 1024]

Peers are optional: without torch/transformers their rows say "skipped".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkpoint, machine, memory_gbs, sgemm_gflops, table  # noqa: E402

import minigpt2  # noqa: E402


def hf_model(path: Path, impl: str):
    try:
        import torch
        from transformers import GPT2LMHeadModel
    except ImportError:
        return None
    torch.set_grad_enabled(False)
    return GPT2LMHeadModel.from_pretrained(path, attn_implementation=impl, torch_dtype=torch.float32).eval()


def alternating(fns: dict, reps: int) -> dict:
    """Median time of each function over reps rounds; each round runs every function once, in turn."""
    import statistics
    import time
    for f in fns.values():
        f()                                               # warm up
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--like", default="gpt2")
    ap.add_argument("--tokens", type=int, nargs="+", default=[8, 128, 1024])
    args = ap.parse_args()
    path = checkpoint(args.like)
    model = minigpt2.load(path)
    cfg = model.cfg
    gflops, gbs = sgemm_gflops(), memory_gbs()
    print(f"machine: {machine()}\nsgemm {gflops:.0f} GFLOP/s, memory {gbs:.1f} GB/s, model {args.like} (random weights)\n")
    peers = {impl: hf_model(path, impl) for impl in ("sdpa", "eager")}
    rows = []
    for T in args.tokens:
        ids = np.random.default_rng(T).integers(0, cfg.d_vocab, T)
        reps = 7 if T <= 128 else 5
        fns = {"run": lambda: model.run(ids), "logits": lambda: model.logits(ids)}
        for impl, m in peers.items():
            if m is not None:
                import torch
                x = torch.tensor(ids)[None]
                fns[impl] = (lambda m=m, x=x: m(x))
                ref = m(x).logits[0].numpy()
                err = float(np.abs(model.logits(ids) - ref).max() / np.abs(ref).max())
                assert err < 1e-4, f"logits differ from HF {impl} by {err:.2e}"
        times = alternating(fns, reps)                    # each round runs every one once: drift hits all alike
        t_run, t_logits = times["run"], times["logits"]
        hf = {impl: times.get(impl) for impl in peers}
        tr = model.run(ids)
        trace_mb = sum(v.nbytes for v in vars(tr).values() if isinstance(v, np.ndarray)) / 2 ** 20
        # lower bound: the larger of (FLOPs at the sgemm rate) and (weight bytes at the memory rate)
        D, L, V, m_ = cfg.d_model, cfg.n_layers, cfg.d_vocab, cfg.d_mlp
        flops = 2 * T * (L * (4 * D * D + 2 * D * m_) + D * V) + 2 * L * T * T * D
        bytes_ = 4 * (L * (4 * D * D + 2 * D * m_) + V * D)
        bound = max(flops / gflops / 1e9, bytes_ / gbs / 1e9)

        def fmt(t):
            return "skipped" if t is None else f"{t * 1000:.1f} ms"

        def ratio(a, b):
            return "-" if b is None else f"{a / b:.2f}x"
        rows.append([T, f"{trace_mb:.0f} MB", fmt(t_run), fmt(t_logits), fmt(hf["sdpa"]), fmt(hf["eager"]), ratio(t_run, hf["sdpa"]),
                     ratio(t_logits, hf["sdpa"]), f"{bound * 1000:.1f} ms", f"{t_run / bound:.1f}x"])
    print(table(["T", "trace memory", "run (trace)", "logits only", "HF sdpa", "HF eager", "run / sdpa", "logits / sdpa",
                 "lower bound", "run / bound"], rows))


if __name__ == "__main__":
    main()
