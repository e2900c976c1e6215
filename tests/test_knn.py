"""analysis.topk against a brute-force full sort."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from analysis.search.knn import VocabIndex, topk
from analysis.search.select import select_topk


def brute(queries, keys, k, metric):
    q, K = queries.astype(np.float64), keys.astype(np.float64)
    if metric == "cosine":
        K = K / np.where(np.linalg.norm(K, axis=1, keepdims=True) > 0, np.linalg.norm(K, axis=1, keepdims=True), 1)
        q = q / np.where(np.linalg.norm(q, axis=1, keepdims=True) > 0, np.linalg.norm(q, axis=1, keepdims=True), 1)
    S = q @ K.T
    return np.argsort(-S, axis=1, kind="stable")[:, :k], S


@st.composite
def problem(draw):
    V, D, n = draw(st.integers(1, 300)), draw(st.integers(1, 12)), draw(st.integers(1, 20))
    k = draw(st.integers(1, min(V, 25)))
    # small integers make exact ties common, which is where selection bugs hide
    elems = st.integers(-3, 3) if draw(st.booleans()) else st.floats(-4, 4, width=32)
    keys = draw(arrays(np.float32, (V, D), elements=elems))
    queries = draw(arrays(np.float32, (n, D), elements=elems))
    return queries, keys, k, draw(st.sampled_from(["cosine", "dot"]))


@settings(max_examples=150, deadline=None)
@given(problem())
def test_topk_equals_brute_force(case):
    queries, keys, k, metric = case
    idx, scores = topk(queries, keys, k, metric)
    ref, S = brute(queries, keys, k, metric)
    # scores agree with float64 to float32 precision, and the chosen items are a true top k
    np.testing.assert_allclose(scores, np.take_along_axis(S, idx, 1), atol=1e-5)
    np.testing.assert_allclose(scores, np.take_along_axis(S, ref, 1), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    if metric == "dot" and np.issubdtype(queries.dtype, np.floating) and (queries == np.round(queries)).all() \
            and (keys == np.round(keys)).all():
        np.testing.assert_array_equal(idx, ref)  # integer data: exact scores, so ties must go to the lower index


def stable_topk(S: np.ndarray, k: int) -> np.ndarray:
    """The reference: the first k columns of each row by (value desc, column asc), a full stable sort."""
    return np.lexsort((np.broadcast_to(np.arange(S.shape[1]), S.shape), -S), axis=-1)[:, :k]


def assert_selects_like_a_stable_sort(S, k, group):
    idx, vals = select_topk(S, k, group)
    ref = stable_topk(S, k)
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(vals, np.take_along_axis(S, ref, 1))


@settings(max_examples=100, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 400)), elements=st.integers(-2, 2)),
       st.integers(1, 40), st.sampled_from([2, 4, 16]), st.sampled_from(["C", "F", "strided"]))
def test_select_topk_exact_with_ties(S, k, group, layout):
    k = min(k, S.shape[1])
    if layout == "F":                                  # transposed scores, as the low-rank search makes them
        S = np.asfortranarray(S)
    elif layout == "strided":                          # neither C nor F contiguous
        wide = np.zeros((S.shape[0], 2 * S.shape[1] + 1), S.dtype)
        wide[:, : 2 * S.shape[1]:2] = S
        S = wide[:, : 2 * S.shape[1]:2]
    assert_selects_like_a_stable_sort(S, k, group)


def test_large_chunked_search_matches_full_sort():
    rng = np.random.default_rng(0)
    keys, queries = rng.standard_normal((5000, 32), np.float32), rng.standard_normal((50, 32), np.float32)
    idx, _ = VocabIndex(keys, "cosine", chunk_bytes=4 * 5000 * 7).search(queries, 10)   # 7-row chunks
    np.testing.assert_array_equal(idx, brute(queries, keys, 10, "cosine")[0])


def test_search_both_gives_top_and_bottom_and_maps_ids():
    rng = np.random.default_rng(1)
    keys, q = rng.standard_normal((700, 16), np.float32), rng.standard_normal((9, 16), np.float32)
    ids = np.arange(700) * 3 + 5
    ti, ts, bi, bs = VocabIndex(keys, "cosine", ids=ids).search_both(q, 7)
    ref, S = brute(q, keys, 7, "cosine")
    np.testing.assert_array_equal(ti, ids[ref])
    np.testing.assert_array_equal(bi, ids[np.argsort(S, axis=1, kind="stable")[:, :7]])
    assert (np.diff(bs, axis=1) >= 0).all() and (bs[:, 0] < ts[:, -1]).all()


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="metric"):
        topk(np.ones((1, 2)), np.ones((3, 2)), 1, "l2")
    with pytest.raises(ValueError, match="k must be in 1..3"):
        topk(np.ones((1, 2)), np.ones((3, 2)), 4)
    with pytest.raises(ValueError, match="NaN"):
        topk(np.array([[np.nan, 1.0]]), np.ones((3, 2)), 1)
    with pytest.raises(ValueError, match=r"queries must be \[n, 2\]"):
        topk(np.ones((1, 3)), np.ones((3, 2)), 1)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(3)
    keys, q = rng.standard_normal((300, 8), np.float32), rng.standard_normal((5, 8), np.float32)
    k0, q0 = keys.copy(), q.copy()
    topk(q, keys, 3)
    VocabIndex(keys).search_both(q, 3)
    np.testing.assert_array_equal(keys, k0)
    np.testing.assert_array_equal(q, q0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from(["cosine", "dot"]), st.booleans())
def test_ln_and_scaled_indexes_equal_search_over_the_built_space(seed, metric, unembed):
    """LN spaces and the unembedding, searched from the shared normalised base, match building them."""
    from analysis.search.knn import LNIndex, ScaledIndex
    from analysis.search.spaces import normalized_words
    rng = np.random.default_rng(seed)
    V, D = 400, 12
    W_E = (rng.standard_normal((V, D)) * rng.uniform(0.1, 3, (V, 1)) + rng.normal(0, 1, (V, 1))).astype(np.float32)
    words = np.sort(rng.choice(V, 300, replace=False))
    g = rng.uniform(0.2, 2, D).astype(np.float32)
    b = (np.zeros(D) if unembed else rng.normal(0, 0.5, D)).astype(np.float32)
    aug, std = normalized_words(W_E, words, 1e-5)
    x = W_E[words].astype(np.float64)
    if unembed:
        space = x * g
        index = ScaledIndex(aug, aug[:, :-1] ** 2, g, std, metric, ids=words)
    else:
        mu = x.mean(1, keepdims=True)
        space = (x - mu) / np.sqrt(((x - mu) ** 2).mean(1, keepdims=True) + 1e-5) * g + b
        index = LNIndex(aug[:, :-1], aug[:, :-1] ** 2, g, b, metric, ids=words)
    q = rng.standard_normal((9, D)).astype(np.float32)
    ref, S = brute(q, space, 5, metric)
    idx, scores = index.search(q, 5)
    np.testing.assert_allclose(scores, np.take_along_axis(S, ref, 1), rtol=1e-4, atol=1e-5)
    # where an id differs from the brute force, it must be a float32 near-tie: same exact score at that rank
    got = np.take_along_axis(S, np.searchsorted(words, idx), 1)
    np.testing.assert_allclose(got, np.take_along_axis(S, ref, 1), rtol=1e-4, atol=1e-5)
    ti, ts, bi, bs = index.search_both(q, 5)
    np.testing.assert_array_equal(ti, idx)
    np.testing.assert_allclose(bs, np.sort(S, axis=1)[:, :5], rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from(["cosine", "dot"]))
def test_stacked_ln_search_equals_each_search(seed, metric):
    """Several LN spaces over one base in one matmul: the same ids and scores as one search per space."""
    from analysis.search.knn import LNIndex
    from analysis.search.spaces import normalized_words
    rng = np.random.default_rng(seed)
    V, D = 300, 10
    W_E = rng.standard_normal((V, D)).astype(np.float32)
    words = np.sort(rng.choice(V, 250, replace=False))
    aug, _ = normalized_words(W_E, words, 1e-5)
    base = aug[:, :-1]
    indexes = [LNIndex(base, base ** 2, rng.uniform(0.2, 2, D).astype(np.float32),
                       rng.normal(0, 0.5, D).astype(np.float32), metric, ids=words) for _ in range(3)]
    qs = [rng.standard_normal((n, D)).astype(np.float32) for n in (1, 7, 4)]
    for (i, s), ix, q in zip(LNIndex.search_stacked(indexes, qs, 5), indexes, qs):
        ri6, rs6 = ix.search(q, 6)                                        # one more: the gap below rank 5
        ri, rs = ri6[:, :5], rs6[:, :5]
        np.testing.assert_allclose(s, rs, rtol=1e-5, atol=1e-6)          # the scores, to float32 rounding
        # the ids wherever two float paths cannot swap them: rank r clear of the scores above and below it
        step = np.abs(np.diff(rs6, axis=1)) > 1e-5                        # [n, 5] rank r vs r + 1
        clear = step.copy()                                               # [n, 5] clear of the one below
        clear[:, 1:] &= step[:, :-1]                                      # and of the one above
        np.testing.assert_array_equal(i[clear], ri[clear])


@settings(max_examples=100, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 600)),
              elements=st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -1.0, 3.0])),
       st.integers(1, 30), st.sampled_from([2, 4, 24]))
def test_select_topk_orders_nan_inf_and_signed_zero_like_a_stable_sort(S, k, group):
    # NaN hides inside a group maximum and -0.0 == 0.0 must tie: the result is still a stable sort's
    k = min(k, S.shape[1])
    assert_selects_like_a_stable_sort(S, k, group)


def select_counting_full_sorts(S, k, *group):
    """select_topk(S, k), and the shapes of the rows it redid by a full sort."""
    import analysis.search.select as select
    full_sorts, real = [], select._sorted_topk

    def spy(vals, cols, kk):
        full_sorts.append(vals.shape)
        return real(vals, cols, kk)

    select._sorted_topk = spy
    try:
        return select_topk(S, k, *group), full_sorts
    finally:
        select._sorted_topk = real


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(300, 900)), elements=st.integers(-3, 3)),
       st.integers(1, 10))
def test_select_topk_floor_is_a_true_lower_bound(S, k):
    # the floor must never exceed a row's k-th largest score: finite rows are then never redone by a full sort
    (idx, _), full_sorts = select_counting_full_sorts(S, k, 24)
    assert full_sorts == []
    ref = stable_topk(S, k)
    np.testing.assert_array_equal(idx, ref)


def test_rows_tied_everywhere_are_sorted_alone_not_expanded():
    # an all-zero row (a zero query) reaches its floor in every group: without a cap its 5,000 columns would
    # all become candidates; it goes to the full sort by itself, and the other rows keep the fast path
    S = np.random.default_rng(3).standard_normal((20, 5000)).astype(np.float32)
    S[3] = 0
    S[7] = np.where(np.arange(5000) % 2 == 0, 1.0, -1.0)     # 2,500 columns tied at the top
    (idx, _), full_sorts = select_counting_full_sorts(S, 10)
    assert full_sorts == [(1, 5000), (1, 5000)]
    ref = stable_topk(S, 10)
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_array_equal(idx[3], np.arange(10))
    np.testing.assert_array_equal(idx[7], np.arange(0, 20, 2))
