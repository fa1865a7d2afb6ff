"""Top-k retrieval by cosine similarity (fMRI prediction <-> candidate embeddings)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fmridecode.io import DataError


def _unit_rows(a: np.ndarray, name: str) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64); zero or non-finite rows are an error."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise DataError(f"retrieval: {name} must be 2D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"retrieval: {name} has non-finite values")
    norm = np.linalg.norm(a, axis=1)
    if np.any(norm == 0):
        raise DataError(f"retrieval: {name} rows {np.flatnonzero(norm == 0)[:5].tolist()} are zero")
    return a / norm[:, None]


def ranks(pred: np.ndarray, candidates: np.ndarray, true_index: np.ndarray) -> np.ndarray:
    """0-based rank of each query's true candidate under cosine similarity, ties pessimistic.

    rank_i = number of candidates j != true_index[i] with cos(pred_i, c_j) >= cos(pred_i,
    c_true); a candidate tied with the true one counts as ranked before it.
    """
    P, C = _unit_rows(pred, "pred"), _unit_rows(candidates, "candidates")
    if P.shape[1] != C.shape[1]:
        raise DataError(f"retrieval: pred has {P.shape[1]} dims, candidates {C.shape[1]}")
    true_index = np.asarray(true_index)
    if true_index.shape != (P.shape[0],) or not np.issubdtype(true_index.dtype, np.integer):
        raise DataError(
            f"retrieval: true_index must be {P.shape[0]} integers, got {true_index.shape}"
        )
    if np.any((true_index < 0) | (true_index >= C.shape[0])):
        raise DataError(f"retrieval: true_index outside 0..{C.shape[0] - 1}")
    S = P @ C.T
    true_sim = S[np.arange(P.shape[0]), true_index]
    return (S >= true_sim[:, None]).sum(axis=1) - 1


def top_k(pred: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Indices (n, k) of each query's k most cosine-similar candidates, best first (ties by
    candidate order)."""
    P, C = _unit_rows(pred, "pred"), _unit_rows(candidates, "candidates")
    if P.shape[1] != C.shape[1]:
        raise DataError(f"retrieval: pred has {P.shape[1]} dims, candidates {C.shape[1]}")
    if not 1 <= k <= C.shape[0]:
        raise DataError(f"retrieval: k must be in [1, {C.shape[0]}], got {k}")
    return np.argsort(-(P @ C.T), axis=1, kind="stable")[:, :k]


def recall_at_k(
    pred: np.ndarray,
    candidates: np.ndarray,
    true_index: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[int, float]:
    """Fraction of queries whose true candidate is among their k most cosine-similar.

    ``pred`` (n, d) are the queries, ``candidates`` (m, d) the whole pool, ``true_index`` (n,)
    the row of each query's match in ``candidates``. Ties are pessimistic (see ``ranks``);
    chance = k / m. For fMRI -> text with several captions per image, pass one candidate per
    image (the mean of its caption embeddings), so that the pool has one entry per image.
    """
    r = ranks(pred, candidates, true_index)
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"recall_at_k: k must be >= 1, got {k}")
    return {int(k): float(np.mean(r < int(k))) for k in ks}


def pooled_recall(
    pred: np.ndarray,
    candidates: np.ndarray,
    ks: Sequence[int],
    pool: int,
    repeats: int = 30,
    seed: int = 0,
) -> dict[str, dict[int, float]]:
    """MindEye's retrieval in random sub-pools: ``repeats`` seeded draws of ``pool`` distinct
    items (row i of ``pred`` matches row i of ``candidates``); in each, forward (prediction ->
    the pool's candidates) and backward (candidate -> the pool's predictions) Recall@k; the
    mean over draws. Chance k / pool."""
    n = len(pred)
    if len(candidates) != n:
        raise DataError(f"pooled retrieval: {n} predictions but {len(candidates)} candidates")
    if not 2 <= pool <= n or repeats < 1:
        raise DataError(f"pooled retrieval: pool must be in [2, {n}] and repeats >= 1")
    rng = np.random.default_rng(seed)
    P, C = np.asarray(pred), np.asarray(candidates)
    sums = {"forward": dict.fromkeys(ks, 0.0), "backward": dict.fromkeys(ks, 0.0)}
    for _ in range(repeats):
        idx = rng.choice(n, size=pool, replace=False)
        own = np.arange(pool)
        for direction, (q, c) in (("forward", (P[idx], C[idx])), ("backward", (C[idx], P[idx]))):
            for k, v in recall_at_k(q, c, own, ks).items():
                sums[direction][k] += v / repeats
    return sums


def retrieval_rows(
    pred: np.ndarray,
    candidates: np.ndarray,
    true_index: np.ndarray | None = None,
    *,
    target: str,
    ks: Sequence[int] = (1, 5, 10),
    pool: int | None = None,
    pool_repeats: int = 30,
    seed: int = 0,
) -> list[dict]:
    """Metric rows for both directions (merge dataset/subject/mapper in with ``metric_rows``).

    ``true_index`` defaults to ``arange(n)``: candidate i is the match of prediction i.
    forward: each prediction retrieves among all ``candidates`` (chance k/m, n = #predictions).
    backward: the true candidate of each prediction retrieves among all n predictions whether
    its own prediction is within its top k (chance k/n). ``pool``: also the rows of
    ``pooled_recall`` (``pool`` = that size, e.g. MindEye's 300 x 30), or unavailable rows
    with the reason when the test set is smaller than the pool.
    """
    n_pred = np.asarray(pred).shape[0]
    true_index = np.arange(n_pred) if true_index is None else np.asarray(true_index)
    n, m = len(true_index), np.asarray(candidates).shape[0]
    forward = recall_at_k(pred, candidates, true_index, ks)
    backward = recall_at_k(np.asarray(candidates)[true_index], pred, np.arange(n), ks)
    rows = []
    for direction, res, pool_size in (("forward", forward, m), ("backward", backward, n)):
        for k, v in res.items():
            rows.append(
                {
                    "metric": "recall_at_k",
                    "target": target,
                    "k": k,
                    "pool": "all",
                    "direction": direction,
                    "value": v,
                    "chance": min(k / pool_size, 1.0),
                    "n": n,
                }
            )
    if pool is None:
        return rows + mean_recall_rows(rows)
    aligned = np.asarray(candidates)[true_index]
    pooled = pooled_recall(pred, aligned, ks, pool, pool_repeats, seed) if n >= pool else None
    for direction in ("forward", "backward"):
        for k in ks:
            row = {
                "metric": "recall_at_k",
                "target": target,
                "k": int(k),
                "pool": str(pool),
                "direction": direction,
                "chance": min(int(k) / pool, 1.0),
                "n": n,
            }
            if pooled is None:
                row |= {"value": np.nan, "status": f"unavailable: {n} test items < pool {pool}"}
            else:
                row["value"] = pooled[direction][int(k)]
            rows.append(row)
    return rows + mean_recall_rows(rows)


def mean_recall_rows(rows: list[dict]) -> list[dict]:
    """``mean_recall``: the mean of the Recall@k rows over k, per target, pool and direction
    (BrainCLIP's mR summary), its chance the mean of theirs; unavailable when any k is."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["metric"] == "recall_at_k":
            groups.setdefault((r["target"], r["pool"], r["direction"]), []).append(r)
    out = []
    for (target, pool, direction), g in groups.items():
        row = {
            "metric": "mean_recall",
            "target": target,
            "pool": pool,
            "direction": direction,
            "chance": float(np.mean([r["chance"] for r in g])),
            "n": g[0]["n"],
            "value": float(np.mean([r["value"] for r in g])),
        }
        if any("status" in r for r in g):
            row |= {"value": np.nan, "status": next(r["status"] for r in g if "status" in r)}
        out.append(row)
    return out
