"""Exact top-k of each row of a score matrix, reading each score once.

Selecting the top k of each row of S [r, V] is what a naive argpartition spends most of its time on,
so we select without one:
1. the maximum of each of V/G groups of G columns (one fast pass over S). Group g holds the strided
   columns g, g + V/G, g + 2V/G, ...: its maximum is an elementwise maximum of G contiguous slices,
   which numpy vectorises (a max over G adjacent columns is 16x slower);
2. a floor under each row's k-th largest score: the k-th largest maximum of disjoint blocks of groups
   (k distinct scores reach it), found by a partition over ~16k numbers, not V;
3. every score at or above the floor, read only from the groups whose maximum reaches it (about k
   scores a row), sorted by (value desc, column asc).
Every top-k score is at or above the floor, so the result is exact, ties included (to the lower index).
A row holding NaN, or tied at its floor in very many groups, is redone with a full stable sort.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

GROUP = 24   # group size: measured best of 16-64 on 41,574- and 50,257-word rows
MAX_GROUPS_PER_ROW = 64  # candidate groups a row may bring, beyond k (about k is usual); more: a full sort
POOL = ThreadPoolExecutor(1)  # the second half of a chunk's selection (numpy releases the GIL in these kernels)


def select_parallel(S: np.ndarray, k: int):
    """select_topk of S [r, V] on two cores: one half on the pool's thread, the other here."""
    if S.shape[0] < 64:
        return select_topk(S, k)
    h = S.shape[0] // 2
    other = POOL.submit(select_topk, S[h:], k)
    i1, v1 = select_topk(S[:h], k)
    i2, v2 = other.result()
    return np.concatenate([i1, i2]), np.concatenate([v1, v2])


def select_topk(S: np.ndarray, k: int, group: int = GROUP) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each row of S [r, V]: (indices [r, k], values [r, k]), descending, ties to lower index."""
    r, V = S.shape
    n_groups = V // group
    if n_groups <= k + 1:                                              # small V: plain sort is cheapest
        return _sorted_topk(S, np.broadcast_to(np.arange(V), S.shape), k)
    main = n_groups * group
    gmax = _group_max(S, group, n_groups)                              # [r, V/G]; group g = columns g + i V/G
    floor = _kth_floor(gmax, k)                                        # [r] <= each row's k-th largest
    # Candidates in any order (the sort below orders them); scanned in memory order, as S is laid out:
    # transposed scores (S = St.T, [V, r] in memory) are scanned as St.
    # (flatnonzero and divmod: np.nonzero of a 2-D mask is 10x slower.)
    by_col = S.flags.f_contiguous and not S.flags.c_contiguous
    if by_col:
        groups, rows = np.divmod(np.flatnonzero(gmax.T >= floor), r)   # the groups that can hold a top-k value
    else:
        rows, groups = np.divmod(np.flatnonzero(gmax >= floor[:, None]), n_groups)
    # A row tied at its floor in many groups (all-zero scores from a zero query) would make every column a
    # candidate: such rows go to the full sort below, one at a time, so the candidates stay ~k a row.
    heavy = np.bincount(rows, minlength=r) > MAX_GROUPS_PER_ROW + k
    if heavy.any():
        groups, rows = groups[~heavy[rows]], rows[~heavy[rows]]
    cols = (groups[:, None] + np.arange(group) * n_groups).ravel()      # [m G] their members
    rows = np.repeat(rows, group)
    if main < V:                                                       # the tail that fills no whole group
        if by_col:
            tail_cols, tail_rows = np.divmod(np.flatnonzero(S.T[main:] >= floor), r)
        else:
            tail_rows, tail_cols = np.divmod(np.flatnonzero(S[:, main:] >= floor[:, None]), V - main)
        light = ~heavy[tail_rows]
        rows, cols = np.concatenate([rows, tail_rows[light]]), np.concatenate([cols, tail_cols[light] + main])
    if S.flags.c_contiguous:
        vals = S.ravel()[rows * V + cols]
    else:
        vals = S.T.ravel()[cols * r + rows] if by_col else S[rows, cols]
    keep = vals >= floor[rows]
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, -vals, rows))                            # by row, value desc, column asc
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts = np.bincount(rows, minlength=r)                            # >= k, unless the row holds NaN
    bad = (counts < k) | np.isnan(gmax).any(axis=1) | heavy            # NaN hides in a group maximum
    pick = (np.cumsum(counts) - counts)[~bad, None] + np.arange(k)     # [good rows, k] each row's first k
    idx, top = np.empty((r, k), np.int64), np.empty((r, k), S.dtype)
    idx[~bad], top[~bad] = cols[pick], vals[pick]
    for i in np.flatnonzero(bad):                                      # redone by a full sort
        idx[i], top[i] = _sorted_topk(S[i:i + 1], np.arange(V)[None], k)
    return idx, top


def _kth_floor(gmax: np.ndarray, k: int) -> np.ndarray:
    """A lower bound on each row's k-th largest value: the k-th largest maximum of disjoint blocks of groups.

    Those k maxima are k distinct values of the row, so the k-th largest value is at least the smallest of
    them. Blocks of about n_groups / 16k groups leave about k candidates a row, and the partition runs
    over 16k numbers, not n_groups.
    """
    r, n_groups = gmax.shape
    per = max(1, n_groups // (16 * k))                                 # groups per block
    n_blocks = n_groups // per
    bmax = gmax[:, :per * n_blocks].reshape(r, per, n_blocks).max(axis=1) if per > 1 else gmax  # [r, blocks]
    return np.partition(bmax, n_blocks - k, axis=1)[:, n_blocks - k]


def _group_max(S: np.ndarray, group: int, n_groups: int) -> np.ndarray:
    """Elementwise maximum of the G column blocks S[:, i n : (i+1) n], with no copy of S."""
    head = S[:, : group * n_groups]
    if head.flags.c_contiguous:
        return head.reshape(S.shape[0], group, n_groups).max(axis=1)
    g = S[:, :n_groups].copy(order="K")           # reshaping a strided view would copy all of S; keeping
                                                  # S's layout (F for a transposed product) keeps the loop contiguous
    for i in range(1, group):
        np.maximum(g, S[:, i * n_groups:(i + 1) * n_groups], out=g)
    return g


def _sorted_topk(vals: np.ndarray, cols: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k of each row by (value desc, column asc)."""
    order = np.lexsort((cols, -vals), axis=-1)[:, :k]
    return np.take_along_axis(cols, order, axis=1).astype(np.int64), np.take_along_axis(vals, order, axis=1)
