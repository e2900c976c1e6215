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
import json, sys, time
t0 = time.perf_counter()
import minigpt2
from analysis import analyze
model = minigpt2.load(sys.argv[1])
t1 = time.perf_counter()
report = analyze(model, sys.argv[2], progress=False)
t2 = time.perf_counter()
report.write(sys.argv[3])
t3 = time.perf_counter()
print(json.dumps({"load": t1 - t0, **report.timings, "write": t3 - t2, "analyze()": t2 - t1, "total": t3 - t0}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--like", default="gpt2")
    ap.add_argument("--text", default="<|endoftext|> The baseball player hit a home run")
    args = ap.parse_args()
    path = checkpoint(args.like)
    cache = tempfile.mkdtemp(prefix="minigpt2-bench-analyze-")
    out = Path(tempfile.mkdtemp()) / "report"
    print(f"machine: {machine()}\nBLAS sgemm {sgemm_gflops():.0f} GFLOP/s; {args.like} (random weights); "
          f"prompt {args.text!r}\n")
    runs = {}
    for name in ("cold", "warm"):
        r = subprocess.run([sys.executable, "-c", CHILD, str(path), args.text, str(out)], capture_output=True,
                           text=True, env={**__import__("os").environ, "MINIGPT2_CACHE": cache})
        if r.returncode != 0:
            sys.exit(r.stderr)
        runs[name] = json.loads(r.stdout.strip().splitlines()[-1])
    stages = list(runs["cold"])
    print(table(["stage", "cold", "warm"], [[s, f"{runs['cold'][s]:.2f} s", f"{runs['warm'][s]:.2f} s"] for s in stages]))


if __name__ == "__main__":
    main()
