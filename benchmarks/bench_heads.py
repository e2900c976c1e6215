"""Pattern and message kNN for one prompt: low-rank head search against the full search and faiss.

    python benchmarks/bench_heads.py [--tokens 128] [--like gpt2]

All three rank the same vectors against the same word vocabulary (patterns against LN1_l(W_E), messages
against ln_f gain x W_E), exact top-10 cosine. Low rank is timed cold (building the projected
vocabularies into an empty cache) and warm (reading them back).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkpoint, machine, table  # noqa: E402

K = 10


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--like", default="gpt2")
    args = ap.parse_args()
    path = checkpoint(args.like)
    os.environ["MINIGPT2_CACHE"] = tempfile.mkdtemp(prefix="minigpt2-bench-heads-")   # cold, private cache
    import minigpt2
    from analysis.search.knn import VocabIndex
    from analysis.search.lowrank import head_topk
    from analysis.search.spaces import build_vocab, ln1_space, unembed_space

    model = minigpt2.load(path)
    cfg, p = model.cfg, model.params
    tr = model.run(np.random.default_rng(0).integers(0, cfg.d_vocab, args.tokens))
    vocab = build_vocab(model)
    L, H, T, D = tr.patterns.shape
    coords = tr.keys * np.float32(1 / np.sqrt(cfg.d_head))
    print(f"machine: {machine()}\n{args.like}: {L * H * T} patterns + {L * H * T} messages (T={T}) vs "
          f"{len(vocab.words)} words, exact top-{K} cosine\n")

    def lowrank():
        pi, _ = head_topk(model, vocab, "pattern", coords, tr.pattern_norms(), K, "cosine")
        mi, _ = head_topk(model, vocab, "message", tr.values, tr.message_norms(), K, "cosine")
        return pi, mi

    def full():
        pi = np.concatenate([vocab.ln_index(p.ln1_w[l], p.ln1_b[l], "cosine").search(tr.patterns[l].reshape(-1, D), K)[0]
                             for l in range(L)])
        mi = VocabIndex(unembed_space(p, vocab.words), "cosine", ids=vocab.words).search(tr.messages.reshape(-1, D), K)[0]
        return pi, mi

    # the peer gets its spaces prebuilt (not timed): it is timed on normalising, indexing and searching
    faiss_spaces = [ln1_space(p, l, cfg.layer_norm_eps, vocab.words) for l in range(L)]
    faiss_unembed = unembed_space(p, vocab.words)

    def faiss_search():
        import faiss

        def flat(keys, queries):
            keys, queries = np.ascontiguousarray(keys), np.ascontiguousarray(queries)
            faiss.normalize_L2(keys)
            faiss.normalize_L2(queries)
            index = faiss.IndexFlatIP(D)
            index.add(keys)
            return vocab.words[index.search(queries, K)[1]]
        pi = np.concatenate([flat(faiss_spaces[l], tr.patterns[l].reshape(-1, D)) for l in range(L)])
        return pi, flat(faiss_unembed, tr.messages.reshape(-1, D))

    results, rows = {}, []
    for name, fn in [("low rank, cold cache", lowrank), ("low rank, warm cache", lowrank),
                     ("analysis full search", full), ("faiss IndexFlatIP", faiss_search)]:
        try:
            t = time.perf_counter()
            results[name] = fn()
            results[name] = (time.perf_counter() - t, results[name])
        except ImportError:
            rows.append([name, "skipped (not installed)", "", ""])
    base_t, (bp, bm) = results["low rank, warm cache"]

    def gap(theirs, ours, vectors, space_of_row):
        """Largest float64 exact-cosine gap, rank by rank, over the rows where two answers differ."""
        worst = 0.0
        for r in np.flatnonzero((theirs != ours).any(axis=1)):
            S = space_of_row(r).astype(np.float64)
            v = vectors[r].astype(np.float64)
            cos = lambda ids: (S[np.searchsorted(vocab.words, ids)] @ v) / (
                np.linalg.norm(S[np.searchsorted(vocab.words, ids)], axis=1) * np.linalg.norm(v))
            worst = max(worst, float(np.abs(cos(theirs[r]) - cos(ours[r])).max()))
        return worst

    spaces = {}
    ln1 = lambda r: spaces.setdefault(r // (H * T), ln1_space(p, r // (H * T), cfg.layer_norm_eps, vocab.words))
    unemb = unembed_space(p, vocab.words)
    for name, (t, (pi, mi)) in results.items():
        diff = int((pi != bp).any(axis=1).sum() + (mi != bm).any(axis=1).sum())
        worst = max(gap(pi, bp, tr.patterns.reshape(-1, D), ln1), gap(mi, bm, tr.messages.reshape(-1, D), lambda r: unemb))
        same = "identical" if diff == 0 else f"{diff} rows differ (near-ties: max exact-score gap {worst:.1e})"
        rows.append([name, f"{t:.2f} s", same, f"{t / base_t:.1f}x"])
    print(table(["method", "time", "vs low rank (warm)", "time / low rank (warm)"], rows))


if __name__ == "__main__":
    main()
