"""Straightforward reference implementations the metric tests compare against (not used by the package).

Surface: scipy erosion with the cross structuring element and ``border_value=0``; distances: a KD-tree
over all surface points in float64. Instances: explicit per-instance masks, as in hover_net's
``stats_utils.py`` (dense IoU table, argmax pairing, Hungarian on the full table).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


def ref_surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxel indices (n, ndim) in C order."""
    mask = np.asarray(mask, bool)
    er = ndi.binary_erosion(mask, structure=ndi.generate_binary_structure(mask.ndim, 1), border_value=0)
    return np.argwhere(mask & ~er)


def ref_directed(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    sp = np.ones(a.ndim) if spacing is None else np.broadcast_to(np.asarray(spacing, float), (a.ndim,))
    pa, pb = ref_surface(a), ref_surface(b)
    if len(pa) == 0:
        return np.empty(0)
    if len(pb) == 0:
        return np.full(len(pa), np.inf)
    d, _ = cKDTree(pb * sp).query(pa * sp)
    return d


def ref_surface_metrics(a, b, spacing, tau=2.0) -> dict:
    dab, dba = ref_directed(a, b, spacing), ref_directed(b, a, spacing)
    if dab.size == 0 and dba.size == 0:
        return dict.fromkeys(("hd", "hd95", "hd95_pooled", "assd", "nsd"), math.nan)
    if dab.size == 0 or dba.size == 0:
        return {"hd": math.inf, "hd95": math.inf, "hd95_pooled": math.inf, "assd": math.inf, "nsd": 0.0}
    pooled = np.concatenate([dab, dba])
    return {
        "hd": max(dab.max(), dba.max()),
        "hd95": max(np.percentile(dab, 95), np.percentile(dba, 95)),
        "hd95_pooled": np.percentile(pooled, 95),
        "assd": pooled.mean(),
        "nsd": (np.sum(dab <= tau) + np.sum(dba <= tau)) / pooled.size,
    }


def ref_instance_metrics(pred: np.ndarray, ref: np.ndarray) -> dict:
    """hover_net-style AJI, AJI+ and PQ with explicit masks (exact IoU, no 1e-6)."""
    rids = [i for i in np.unique(ref) if i != 0]
    pids = [i for i in np.unique(pred) if i != 0]
    if not rids and not pids:
        return {"aji": math.nan, "aji_plus": math.nan, "pq": math.nan, "dq": math.nan, "sq": math.nan}
    if not rids or not pids:
        zeros = {"aji": 0.0, "aji_plus": 0.0, "pq": 0.0, "dq": 0.0, "sq": 0.0}
        return {**zeros, "aji_plus_total_iou": 0.0, "tp": 0, "fp": len(pids), "fn": len(rids)}
    rmasks = [ref == i for i in rids]
    pmasks = [pred == i for i in pids]
    inter = np.zeros((len(rids), len(pids)))
    union = np.zeros((len(rids), len(pids)))
    for i, rm in enumerate(rmasks):
        for j, pm in enumerate(pmasks):
            inter[i, j] = np.sum(rm & pm)
            union[i, j] = np.sum(rm | pm)
    iou = inter / union

    # AJI: each reference takes its best prediction (first on ties), reuse allowed
    best = np.argmax(iou, axis=1)
    has = iou[np.arange(len(rids)), best] > 0
    used = set(best[has].tolist())
    i_sum = inter[np.arange(len(rids))[has], best[has]].sum()
    u_sum = union[np.arange(len(rids))[has], best[has]].sum()
    u_sum += sum(rmasks[i].sum() for i in range(len(rids)) if not has[i])
    u_sum += sum(pmasks[j].sum() for j in range(len(pids)) if j not in used)
    aji = i_sum / u_sum

    # AJI+: Hungarian on the full table
    rows, cols = linear_sum_assignment(-iou)
    keep = iou[rows, cols] > 0
    rows, cols = rows[keep], cols[keep]
    u_plus = union[rows, cols].sum()
    u_plus += sum(rmasks[i].sum() for i in range(len(rids)) if i not in set(rows.tolist()))
    u_plus += sum(pmasks[j].sum() for j in range(len(pids)) if j not in set(cols.tolist()))
    aji_plus = inter[rows, cols].sum() / u_plus
    total_iou_plus = iou[rows, cols].sum()

    # PQ at IoU > 0.5
    matched = iou > 0.5
    tp = int(matched.sum())
    fp, fn = len(pids) - tp, len(rids) - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = iou[matched].sum() / tp if tp else 0.0
    return {
        "aji": aji,
        "aji_plus": aji_plus,
        "aji_plus_total_iou": total_iou_plus,
        "pq": dq * sq,
        "dq": dq,
        "sq": sq,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }
