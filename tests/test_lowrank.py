"""Low-rank head kNN equals the full search over the same pattern and message vectors."""
import numpy as np
import pytest

from analysis.search.knn import VocabIndex
from analysis.search.lowrank import head_topk
from analysis.search.spaces import Vocab, ln1_space, normalized_words, standardize, unembed_space

from .conftest import random_model, tiny_config


@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("block_rows, cores", [(None, 1), (8, 3)])
def test_low_rank_equals_full_search(metric, seed, block_rows, cores, tmp_path, monkeypatch):
    import analysis.search.lowrank as lowrank
    monkeypatch.setenv("MINIGPT2_CACHE", str(tmp_path))
    monkeypatch.setattr(lowrank, "_cores", lambda: cores)  # 4 heads: on one worker, or shared out to three
    if block_rows:                                     # 30 tokens in blocks of 8, 8, 8 and 6 queries
        monkeypatch.setattr(lowrank, "HEAD_SCORE_BYTES", cores * 4 * 700 * block_rows)
        monkeypatch.setattr(lowrank, "MIN_WORKER_BYTES", 4 * 700 * block_rows)
    cfg = tiny_config(L=2, H=4, e=8, m=16, V=900, n_ctx=40)
    model, _ = random_model(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    tr = model.run(rng.integers(0, cfg.d_vocab, 30))
    words = np.sort(rng.choice(cfg.d_vocab, 700, replace=False))            # a word filter
    b = np.zeros(cfg.d_vocab, np.float32)
    aug, std = normalized_words(model.params.W_E, words, 1e-5)
    vocab = Vocab([str(i) for i in range(cfg.d_vocab)], words, b, standardize(b), aug, aug[:, :-1] ** 2, std)
    p, k = model.params, 7
    coords = tr.keys / np.sqrt(cfg.d_head)
    for use_cache in (True, True, False):                                     # build, then read the cache
        ids, scores = head_topk(model, vocab, "pattern", coords, tr.pattern_norms(), k, metric, use_cache)
        for l in range(cfg.n_layers):
            full = VocabIndex(ln1_space(p, l, 1e-5, words), metric, ids=words)
            fi, fs = full.search(tr.patterns[l].reshape(-1, cfg.d_model), k)
            rows = slice(l * cfg.n_heads * 30, (l + 1) * cfg.n_heads * 30)
            np.testing.assert_allclose(scores[rows], fs, rtol=1e-4, atol=1e-5)
            np.testing.assert_array_equal(ids[rows], fi)   # (fixed seeds: no float near-ties to swap)
        ids, scores = head_topk(model, vocab, "message", tr.values, tr.message_norms(), k, metric, use_cache)
        full = VocabIndex(unembed_space(p, words), metric, ids=words)
        fi, fs = full.search(tr.messages.reshape(-1, cfg.d_model), k)
        np.testing.assert_allclose(scores, fs, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(ids, fi)
    assert len(list(tmp_path.rglob("*.bin"))) == 2 * cfg.n_layers
