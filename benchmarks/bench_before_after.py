"""The whole analyze job on two versions of the code, in the same run: before and after.

    git worktree add /tmp/before b618350
    python benchmarks/bench_before_after.py /tmp/before .        # [--tokens 0 1000]

Each (version, prompt) runs twice in a fresh process with its own cache folder (cold, then warm), through
`analyze(model, ids=...)`, which both versions take; the warm run is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkpoint, machine, table  # noqa: E402

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import minigpt2
from analysis import analyze
model = minigpt2.load(sys.argv[1])
n = int(sys.argv[3])
text = " The baseball player hit a home run" if n == 0 else \
    " ".join(["The baseball player hit a home run and the crowd went wild."] * 200)
ids = model.encode(text)[: n or None]
t1 = time.perf_counter()
report = analyze(model, ids=ids, progress=False)
t2 = time.perf_counter()
report.write(sys.argv[2])
t3 = time.perf_counter()
page = __import__("pathlib").Path(sys.argv[2]) / "index.html"
print(json.dumps({"analyze()": t2 - t1, "whole job": t3 - t0, "peak RSS GB": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss / 1e6, "page MB": page.stat().st_size / 1e6}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before", help="the older checkout (a git worktree)")
    ap.add_argument("after", help="the newer checkout")
    ap.add_argument("--tokens", type=int, nargs="+", default=[0, 1000], help="0: the essay's 8 tokens")
    args = ap.parse_args()
    ckpt = checkpoint("gpt2")
    print(f"machine: {machine()}\n")
    rows = []
    for n in args.tokens:
        got = {}
        for name, root in (("before", args.before), ("after", args.after)):
            cache, out = tempfile.mkdtemp(), Path(tempfile.mkdtemp())
            env = {**os.environ, "MINIGPT2_CACHE": cache, "PYTHONPATH": str(Path(root).resolve())}
            for i in range(2):                                   # cold, then warm
                r = subprocess.run([sys.executable, "-c", CHILD, str(ckpt), str(out / f"r{i}"), str(n)],
                                   capture_output=True, text=True, env=env, cwd=cache)   # not this checkout
                if r.returncode != 0:
                    sys.exit(r.stderr)
            got[name] = json.loads(r.stdout.strip().splitlines()[-1])
        b, a = got["before"], got["after"]
        rows.append([n or 8, f"{b['analyze()']:.2f} s", f"{a['analyze()']:.2f} s", f"{b['whole job']:.2f} s",
                     f"{a['whole job']:.2f} s", f"{b['peak RSS GB']:.2f} / {a['peak RSS GB']:.2f} GB",
                     f"{b['page MB']:.1f} / {a['page MB']:.1f} MB"])
    print(table(["tokens", "before: analyze()", "after: analyze()", "before: whole job", "after: whole job",
                 "peak RSS before / after", "page before / after"], rows))


if __name__ == "__main__":
    main()
