"""The whole `analyze` job on the essay's 8-token prompt, GPT-2-small shapes: cold and warm, by stage.

    python benchmarks/bench_analyze.py [--like gpt2] [--text "..."]

Cold: an empty cache directory (the neuron meanings are computed). Warm: the same directory again,
in a fresh process, as a user's second run would be. Each run is a subprocess of the CLI's own path.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkpoint, machine, sgemm_gflops, table  # noqa: E402

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import minigpt2
from analysis import analyze
model = minigpt2.load(sys.argv[1])
t1 = time.perf_counter()
n = int(sys.argv[4])
prompt = sys.argv[2] if n == 0 else model.encode(" ".join([sys.argv[2]] * n))[:n]
report = analyze(model, prompt, progress=False)
t2 = time.perf_counter()
out = report.write(sys.argv[3], force=True)
t3 = time.perf_counter()
print(json.dumps({"load": t1 - t0, **report.timings, "write": t3 - t2, "analyze()": t2 - t1, "total": t3 - t0,
                  "peak RSS GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  "page MB": (out / "index.html").stat().st_size / 1e6}))
"""


def hf_unit(path, T: int = 1024) -> float | None:
    """HF transformers' sdpa forward at T tokens, median of 3, in this run: the unit of the targets."""
    try:
        import torch
        from transformers import GPT2LMHeadModel
    except ImportError:
        return None
    import statistics
    import time
    torch.set_grad_enabled(False)
    m = GPT2LMHeadModel.from_pretrained(path, attn_implementation="sdpa", torch_dtype=torch.float32).eval()
    x = torch.randint(0, m.config.vocab_size, (1, T))
    m(x)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        m(x)
        times.append(time.perf_counter() - t)
    del m
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--like", default="gpt2")
    ap.add_argument("--text", default="<|endoftext|> The baseball player hit a home run")
    ap.add_argument("--tokens", type=int, default=0,
                    help="instead of --text, a prompt of this many tokens (the text repeated), e.g. 1000")
    args = ap.parse_args()
    path = checkpoint(args.like)
    cache = tempfile.mkdtemp(prefix="minigpt2-bench-analyze-")
    out = Path(tempfile.mkdtemp()) / "report"
    print(f"machine: {machine()}\nBLAS sgemm {sgemm_gflops():.0f} GFLOP/s; {args.like} (random weights); "
          f"prompt {args.text!r}\n")
    runs = {}
    for name in ("cold", "warm"):
        t = __import__("time").perf_counter()
        r = subprocess.run([sys.executable, "-c", CHILD, str(path), args.text, str(out), str(args.tokens)],
                           capture_output=True, text=True, env={**__import__("os").environ, "MINIGPT2_CACHE": cache})
        if r.returncode != 0:
            sys.exit(r.stderr)
        runs[name] = json.loads(r.stdout.strip().splitlines()[-1])
        runs[name]["process (wall)"] = __import__("time").perf_counter() - t
    unit = hf_unit(path)
    stages = list(runs["cold"])
    fmt = lambda s, v: f"{v:.2f}" + ("" if s in ("peak RSS GB", "page MB") else " s")  # noqa: E731
    rows = [[s, fmt(s, runs["cold"][s]), fmt(s, runs["warm"][s])] for s in stages]
    if unit:
        rows.append(["HF sdpa forward, T=1024 (the unit)", "", f"{unit:.2f} s"])
        for s in ("analyze()", "total", "process (wall)"):
            rows.append([f"{s} / unit", "", f"{runs['warm'][s] / unit:.2f}x"])
    print(table(["stage", "cold", "warm"], rows))


if __name__ == "__main__":
    main()
