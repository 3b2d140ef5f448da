"""CUTS stage 2: clustering one case's per-pixel embeddings (Liu et al., MICCAI 2024).

The paper clusters each image on its own: PHATE (Moon et al., Nature Biotechnology 2019; the
``phate`` package) on the image's pixel embeddings with ``knn = 100``, ``t = 2``, 500 landmarks and 3
components, then ``phate.cluster.kmeans`` with 10 clusters — k-means on the PHATE *diffusion
potential* (the 3-D embedding itself is never used for the clusters, so we skip its MDS step; the
clusters are the same). Variants (``clustering=``):

``phate_kmeans`` (default, the paper's)
    PHATE + k-means on a random subsample of ``n_sample`` pixels of the case (PHATE's kNN graph on
    every pixel of a 256² image or a volume does not fit a CPU schedule); every other pixel takes the
    label of the majority of its ``assign_k`` nearest subsampled pixels in embedding space
    (``assign="knn"``), or of the nearest cluster mean embedding (``assign="centroid"``, cheaper).
``pca_kmeans`` (the lighter variant)
    PCA of the subsample's embeddings to ``pca_components`` dimensions, k-means (k-means++, 3
    restarts) there; every pixel gets its nearest k-means centre in PCA space (exact k-means
    assignment, no kNN).

A "case" is an image (2D) or a volume whose slices went through the 2D encoder (3D datasets in the
``2d`` configuration): its voxels are pooled, so one volume has one set of clusters. The subsample
is drawn with the run's seed; PHATE and k-means use it as ``random_state`` (deterministic results).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["CLUSTERINGS", "assign_labels", "cluster_sample", "cluster_means", "sample_points"]

CLUSTERINGS = ("phate_kmeans", "pca_kmeans")


def sample_points(spatial: tuple, n: int, seed: int) -> np.ndarray:
    """Flat indices (sorted) of ``min(n, prod(spatial))`` distinct voxels drawn with ``seed``."""
    total = int(np.prod(spatial))
    rng = np.random.default_rng(int(seed))
    if total <= n:
        return np.arange(total)
    return np.sort(rng.choice(total, int(n), replace=False))


def _phate_kmeans(emb: np.ndarray, k: int, knn: int, t: int, n_landmark: int | None, seed: int) -> np.ndarray:
    import phate

    n = emb.shape[0]
    op = phate.PHATE(n_components=3, knn=max(2, min(int(knn), n - 2)), t=int(t),
                     n_landmark=int(n_landmark) if n_landmark and n > int(n_landmark) else None,
                     random_state=int(seed), n_jobs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        op.fit(emb)
        return np.asarray(phate.cluster.kmeans(op, n_clusters=k, random_state=int(seed)), dtype=np.int64)


def cluster_sample(emb: np.ndarray, clustering: str = "phate_kmeans", n_clusters: int = 10, seed: int = 0,
                   knn: int = 100, t: int = 2, n_landmark: int | None = 500, pca_components: int = 8) -> tuple[np.ndarray, object]:
    """Cluster labels ``(n,)`` (0..K-1, K ≤ ``n_clusters``) of the subsample's embeddings ``(n, L)``
    and the fitted model (``(pca, kmeans)`` for ``pca_kmeans``, None for PHATE).

    Raises:
        ValueError: unknown ``clustering``, or fewer than 3 samples.
    """
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n = emb.shape[0]
    if clustering not in CLUSTERINGS:
        raise ValueError(f"clustering must be one of {CLUSTERINGS}, got {clustering!r}")
    if n < 3:
        raise ValueError(f"clustering needs at least 3 pixels, got {n}")
    k = max(1, min(int(n_clusters), n - 1))
    distinct = len(np.unique(emb[: min(n, 4096)].round(6), axis=0))
    if distinct < 2:  # a constant case: one cluster
        return np.zeros(n, np.int64), None
    k = min(k, distinct)
    if clustering == "phate_kmeans":
        labels, model = _phate_kmeans(emb, k, knn, t, n_landmark, seed), None
    else:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        pca = PCA(n_components=max(1, min(int(pca_components), emb.shape[1], n - 1)), random_state=int(seed)).fit(emb)
        km = KMeans(n_clusters=k, n_init=3, random_state=int(seed)).fit(pca.transform(emb))
        labels, model = km.labels_.astype(np.int64), (pca, km)
    _, labels = np.unique(labels, return_inverse=True)  # consecutive ids
    return labels.astype(np.int64), model


def cluster_means(emb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean embedding ``(K, L)`` of each cluster ``0..K-1`` (``K = labels.max() + 1``)."""
    k = int(labels.max()) + 1 if labels.size else 0
    sums = np.zeros((k, emb.shape[1]), np.float64)
    np.add.at(sums, labels, emb)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def assign_labels(emb: torch.Tensor, ref_emb: torch.Tensor, ref_labels: torch.Tensor, centroids: torch.Tensor,
                  rule: str = "knn", k: int = 5, model=None, chunk: int = 8192) -> torch.Tensor:
    """Cluster labels ``(N,)`` of embeddings ``(N, L)`` from a clustered subsample.

    ``model`` (a ``pca_kmeans`` fit): its k-means prediction in PCA space. Else ``rule="knn"``: the
    majority label of the ``k`` nearest subsample embeddings ``ref_emb`` (Euclidean; ties to the
    nearest neighbour's label); ``"centroid"``: the nearest cluster mean ``centroids`` ``(K, L)``.
    """
    if model is not None:
        pca, km = model
        return torch.from_numpy(km.predict(pca.transform(emb.cpu().numpy().astype(np.float32))).astype(np.int64))
    if rule not in ("knn", "centroid"):
        raise ValueError(f"assign must be 'knn' or 'centroid', got {rule!r}")
    nclass = int(ref_labels.max()) + 1
    out = []
    refs = centroids if rule == "centroid" else ref_emb
    r2 = (refs * refs).sum(1)
    kk = 1 if rule == "centroid" else max(1, min(int(k), refs.shape[0]))
    for q in emb.split(chunk):
        d = r2[None, :] - 2.0 * (q @ refs.T)  # squared distance up to |q|²
        if rule == "centroid":
            out.append(d.argmin(1))
            continue
        idx = d.topk(kk, dim=1, largest=False).indices  # (n, k), nearest first
        lab = ref_labels[idx]
        votes = torch.zeros(q.shape[0], nclass, device=q.device)
        votes.scatter_add_(1, lab, torch.ones_like(lab, dtype=votes.dtype))
        votes.scatter_add_(1, lab[:, :1], torch.full_like(lab[:, :1], 0.5, dtype=votes.dtype))  # tie-break
        out.append(votes.argmax(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)
