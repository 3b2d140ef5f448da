"""Instance-segmentation metrics: AJI, AJI+, PQ (DQ, SQ) and detection precision/recall/F1.

Definitions follow hover_net's ``metrics/stats_utils.py`` (Graham et al. 2019), see ``METRICS.md``:

* AJI (Kumar et al. 2017, IEEE TMI 36(7)): every reference instance is paired with the prediction
  of highest IoU among those it overlaps (a prediction may be reused); the paired intersections over
  the paired unions plus the areas of unpaired references and of predictions that nobody chose.
* AJI+ : the same with a unique pairing that maximises the summed IoU (Hungarian).
* PQ = DQ x SQ (Kirillov et al. 2019) with matches at IoU > 0.5 (unique by construction);
  DQ = TP / (TP + FP/2 + FN/2) (= detection F1), SQ = mean IoU of the matches.

Everything comes from one pass over the pixels that builds the reference x prediction overlap
table (numba); ids are arbitrary non-negative integers (0 = background), need not be contiguous.

Deliberate differences from hover_net: IoUs are exact (hover_net adds 1e-6 to the union, which can
only matter for near-ties); when several predictions tie for a reference's best IoU, AJI takes the
lowest prediction id (hover_net's ``argmax`` does the same on its id-sorted table); AJI+ solves the
assignment per connected component of the overlap graph, which attains the same optimal summed IoU
but may pick a different optimum when several exist (hover_net then picks whichever its solver
returns); and SQ is 0 rather than 0/1e-6 when there is no match (the same number).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["INSTANCE_METRICS", "instance_metrics"]

INSTANCE_METRICS = ("aji", "aji_plus", "pq", "dq", "sq", "precision", "recall", "f1")
PQ_MATCH_IOU = 0.5
_DENSE_TABLE_MAX = 1 << 22  # entries of the dense overlap table before switching to a sparse one
_LUT_MAX_ID = 1 << 24


@njit(cache=True, nogil=True)
def _compact_lut(flat, max_id):
    """Map present ids to 0..n (0 stays 0) via a lookup table; returns (lut, sorted ids incl. 0)."""
    present = np.zeros(max_id + 1, np.bool_)
    for v in flat:
        present[v] = True
    present[0] = True
    lut = np.zeros(max_id + 1, np.int64)
    n = 0
    for v in range(max_id + 1):
        if present[v]:
            lut[v] = n
            n += 1
    ids = np.empty(n, np.int64)
    for v in range(max_id + 1):
        if present[v]:
            ids[lut[v]] = v
    return lut, ids


@njit(cache=True, nogil=True)
def _apply_lut(flat, lut):
    out = np.empty(flat.shape[0], np.int64)
    for i in range(flat.shape[0]):
        out[i] = lut[flat[i]]
    return out


@njit(cache=True, nogil=True)
def _count_dense(r, p, nr, npred):
    """Areas and the dense (nr x npred) overlap table of compact label arrays (index 0 = background)."""
    area_r = np.zeros(nr, np.int64)
    area_p = np.zeros(npred, np.int64)
    table = np.zeros((nr, npred), np.int64)
    for i in range(r.shape[0]):
        a = r[i]
        b = p[i]
        area_r[a] += 1
        area_p[b] += 1
        if a != 0 and b != 0:
            table[a, b] += 1
    return area_r, area_p, table


@njit(cache=True, nogil=True)
def _count_sparse(r, p, nr, npred):
    """Areas and the overlap keys ``r * npred + p`` of overlapping foreground pixels."""
    area_r = np.zeros(nr, np.int64)
    area_p = np.zeros(npred, np.int64)
    keys = np.empty(r.shape[0], np.int64)
    k = 0
    for i in range(r.shape[0]):
        a = r[i]
        b = p[i]
        area_r[a] += 1
        area_p[b] += 1
        if a != 0 and b != 0:
            keys[k] = a * npred + b
            k += 1
    return area_r, area_p, keys[:k]


def _compact(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compact labels (0 = background) and the sorted original ids, for any non-negative int ids."""
    if x.size and x.min() < 0:
        raise ValueError("instance ids must be non-negative integers (0 = background)")
    max_id = int(x.max()) if x.size else 0
    if max_id <= max(_LUT_MAX_ID, 4 * x.size):
        lut, ids = _compact_lut(x, max_id)
        return _apply_lut(x, lut), ids
    ids, inv = np.unique(np.concatenate([[0], x]), return_inverse=True)
    return inv[1:].astype(np.int64), ids


def _as_instance_map(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(
                f"{name}: instance ids must be integers, got dtype {a.dtype} with fractional values"
            )
    return np.ascontiguousarray(a).reshape(-1).astype(np.int64, copy=False)


def overlap_table(pred_inst, ref_inst):
    """Areas and pairwise overlaps of two instance maps.

    Returns:
        ``(ref_ids, pred_ids, ref_area, pred_area, (ri, pi, inter))``: sorted foreground ids, their
        areas in pixels, and the COO list of overlapping pairs (indices into the id arrays, sorted
        by reference then prediction) with their intersection in pixels.
    """
    r0 = _as_instance_map(ref_inst, "ref_inst")
    p0 = _as_instance_map(pred_inst, "pred_inst")
    if np.shape(ref_inst) != np.shape(pred_inst):
        raise ValueError(f"pred and ref shapes differ: {np.shape(pred_inst)} vs {np.shape(ref_inst)}")
    r, rid = _compact(r0)
    p, pid = _compact(p0)
    nr, npred = rid.size, pid.size
    if nr * npred <= _DENSE_TABLE_MAX:
        area_r, area_p, table = _count_dense(r, p, nr, npred)
        ri, pi = np.nonzero(table)
        inter = table[ri, pi]
    else:
        area_r, area_p, keys = _count_sparse(r, p, nr, npred)
        keys, inter = np.unique(keys, return_counts=True)
        ri, pi = np.divmod(keys, npred)
    # drop the background row/column (index 0)
    return rid[1:], pid[1:], area_r[1:], area_p[1:], (ri - 1, pi - 1, inter.astype(np.int64))


def _aji(nr, npred, area_r, area_p, ri, pi, inter, union) -> float:
    iou = inter / union
    # best prediction per reference: sort by reference, then IoU descending, then prediction id
    order = np.lexsort((pi, -iou, ri))
    first = np.ones(order.size, bool)
    first[1:] = ri[order][1:] != ri[order][:-1]
    best = order[first]
    used_p = np.zeros(npred, bool)
    used_p[pi[best]] = True
    paired_r = np.zeros(nr, bool)
    paired_r[ri[best]] = True
    i_sum = int(inter[best].sum())
    u_sum = int(union[best].sum()) + int(area_r[~paired_r].sum()) + int(area_p[~used_p].sum())
    return i_sum / u_sum


def _unique_pairs(nr, npred, ri, pi, iou) -> np.ndarray:
    """Indices into the COO list of a max-summed-IoU unique pairing (Hungarian per component)."""
    if ri.size == 0:
        return np.empty(0, np.int64)
    graph = coo_matrix((np.ones(ri.size), (ri, nr + pi)), shape=(nr + npred, nr + npred))
    _, comp = connected_components(graph, directed=False)
    c = comp[ri]
    n_edges = np.bincount(c, minlength=comp.max() + 1)[c]
    chosen = [np.flatnonzero(n_edges == 1)]  # components that are one overlapping pair: take it
    for cc in np.unique(c[n_edges > 1]):
        edges = np.flatnonzero(c == cc)
        rr, r_inv = np.unique(ri[edges], return_inverse=True)
        pp, p_inv = np.unique(pi[edges], return_inverse=True)
        block = np.zeros((rr.size, pp.size))
        block[r_inv, p_inv] = iou[edges]
        lookup = np.full((rr.size, pp.size), -1, np.int64)
        lookup[r_inv, p_inv] = edges
        rows, cols = linear_sum_assignment(block, maximize=True)
        e = lookup[rows, cols]
        chosen.append(e[e >= 0])
    return np.sort(np.concatenate(chosen))


def instance_metrics(pred_inst, ref_inst, match_iou: float = PQ_MATCH_IOU) -> dict:
    """AJI, AJI+, PQ, DQ, SQ and detection precision/recall/F1 of two instance label maps.

    Args:
        pred_inst, ref_inst: integer arrays of the same shape (2D for nuclei; any shape works);
            0 = background, every other value one instance; ids need not be contiguous.
        match_iou: PQ/detection match threshold (a match needs IoU > ``match_iou``; must be >= 0.5
            so that matches are unique).

    Returns:
        dict with ``aji, aji_plus, pq, dq, sq, precision, recall, f1`` (floats) and ``tp, fp, fn,
        n_pred, n_ref`` (ints). Both maps empty: all metrics NaN. Exactly one empty: all metrics 0
        (also precision when there is no prediction and recall when there is no reference).

    Example:
        >>> ref = np.zeros((8, 8), int); ref[1:4, 1:4] = 7; ref[5:8, 5:8] = 9
        >>> instance_metrics(ref, ref)["pq"]
        1.0
    """
    if not match_iou >= 0.5:
        raise ValueError(f"match_iou must be >= 0.5 for unique matching, got {match_iou}")
    rid, pid, area_r, area_p, (ri, pi, inter) = overlap_table(pred_inst, ref_inst)
    nr, npred = rid.size, pid.size
    out = {"tp": 0, "fp": npred, "fn": nr, "n_pred": npred, "n_ref": nr}
    if nr == 0 and npred == 0:
        return {**dict.fromkeys(INSTANCE_METRICS, math.nan), **out}
    if nr == 0 or npred == 0:
        return {**dict.fromkeys(INSTANCE_METRICS, 0.0), **out}

    union = area_r[ri] + area_p[pi] - inter
    iou = inter / union
    aji = _aji(nr, npred, area_r, area_p, ri, pi, inter, union)

    e = _unique_pairs(nr, npred, ri, pi, iou)
    e = e[iou[e] > 0]
    r_un = np.ones(nr, bool)
    r_un[ri[e]] = False
    p_un = np.ones(npred, bool)
    p_un[pi[e]] = False
    aji_plus = int(inter[e].sum()) / (int(union[e].sum()) + int(area_r[r_un].sum()) + int(area_p[p_un].sum()))

    matched = iou > match_iou
    tp = int(np.count_nonzero(matched))
    fp, fn = npred - tp, nr - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = float(iou[matched].sum() / tp) if tp else 0.0
    return {
        "aji": float(aji),
        "aji_plus": float(aji_plus),
        "pq": dq * sq,
        "dq": dq,
        "sq": sq,
        "precision": tp / npred,
        "recall": tp / nr,
        "f1": dq,
        **{"tp": tp, "fp": fp, "fn": fn, "n_pred": npred, "n_ref": nr},
    }
