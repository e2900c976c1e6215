"""model.grad (forward + the NumPy backward pass) against torch's forward + backward on the same weights.

    python benchmarks/bench_grad.py [--like gpt2] [--tokens 256 1024]

The peer is HF transformers' GPT2LMHeadModel (sdpa attention, float32, the same thread count), loss with
labels=ids, .backward() into every parameter: the same work as model.grad(ids). Without torch the peer's
columns say "skipped". Memory: the peak of numpy's allocations during model.grad (tracemalloc), beside the
trace and the gradients it returns.
"""
from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import alternating  # noqa: E402
from common import checkpoint, machine, table  # noqa: E402

import minigpt2  # noqa: E402


def torch_step(path: Path):
    try:
        import torch
        from transformers import GPT2LMHeadModel
    except ImportError:
        return None
    m = GPT2LMHeadModel.from_pretrained(path, attn_implementation="sdpa", dtype=torch.float32).eval()

    def step(ids):
        m.zero_grad(set_to_none=True)
        x = torch.tensor(ids)[None]
        loss = m(x, labels=x).loss
        loss.backward()
        return float(loss)
    return step


def nbytes(obj) -> int:
    return sum(v.nbytes for v in vars(obj).values() if isinstance(v, np.ndarray))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--like", default="gpt2")
    ap.add_argument("--tokens", type=int, nargs="+", default=[256, 1024])
    args = ap.parse_args()
    path = checkpoint(args.like)
    model = minigpt2.load(path)
    peer = torch_step(path)
    threads = "?"
    if peer is not None:
        import torch
        threads = torch.get_num_threads()
    print(f"machine: {machine()}\nmodel {args.like} (random weights), torch threads {threads}\n")
    rows = []
    for T in args.tokens:
        ids = np.random.default_rng(T).integers(0, model.cfg.d_vocab, T)
        fns = {"grad": lambda: model.grad(ids)}
        if peer is not None:
            fns["torch"] = lambda: peer(ids)
            assert abs(peer(ids) - model.grad(ids).loss) < 1e-3, "the losses differ"
        times = alternating(fns, 3)
        tracemalloc.start()
        g = model.grad(ids)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        trace_mb = nbytes(model.run(ids)) / 2 ** 20
        grads_mb = (nbytes(g) + nbytes(g.params)) / 2 ** 20
        t_torch = times.get("torch")
        rows.append([T, f"{times['grad'] * 1000:.0f} ms", "skipped" if t_torch is None else f"{t_torch * 1000:.0f} ms",
                     "-" if t_torch is None else f"{times['grad'] / t_torch:.2f}x", f"{peak / 2 ** 20:.0f} MB",
                     f"{trace_mb:.0f} MB", f"{grads_mb:.0f} MB"])
    print(table(["T", "model.grad", "torch fwd+bwd", "grad / torch", "peak (numpy)", "trace", "grads"], rows))


if __name__ == "__main__":
    main()
