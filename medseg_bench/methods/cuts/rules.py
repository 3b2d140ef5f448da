"""How a CUTS cluster becomes a class: the label-free rule, the paper's oracle, a learned assignment.

* :func:`label_free_labels` — ``cuts`` (budget 0): the polarity rule of the plan's modality applied
  to the clusters' mean intensities (:mod:`medseg_bench.methods._polarity`; the darkest cluster for
  fundus autofluorescence and H&E, the brightest for CT and SPECT, the smallest otherwise): one
  cluster is the foreground. Nothing but the image is read.
* :func:`oracle_labels` — ``cuts_oracle``: the paper's evaluation protocol (its code's
  ``label_hint_seg``): for each foreground class, the cluster holding the most of the class's
  reference pixels. It reads the test case's ground truth, so its rows are oracle rows.
* :class:`ClusterAssignment` — ``cuts_assign`` (budgets ≥ 1): clusters of the budget's labelled
  cases, each described by its mean embedding and labelled with its class fractions; a test
  cluster takes the mean class fractions of its ``k`` most cosine-similar labelled clusters and
  becomes the class with the largest (background on ties).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..classical import phase_mask

__all__ = ["ClusterAssignment", "class_fractions", "label_free_labels", "oracle_labels"]


def label_free_labels(clusters: np.ndarray, image: np.ndarray, rule: str) -> np.ndarray:
    """Binary label map (uint8, spatial): the one cluster the polarity ``rule`` names (cluster means
    on the channel mean of ``image`` ``(C, *spatial)``; see :func:`~medseg_bench.methods._polarity.choose_phase`)."""
    return phase_mask(clusters, image, rule).astype(np.uint8)


def oracle_labels(clusters: np.ndarray, reference: np.ndarray, num_classes: int) -> np.ndarray:
    """Label map (uint8): for each class ``c = 1..K-1`` present in ``reference``, the cluster with
    the most pixels of class ``c`` becomes ``c`` (a cluster claimed by two classes goes to the later
    one); everything else is background. A class absent from the reference predicts nothing.

    Raises:
        ValueError: ``clusters`` and ``reference`` differ in shape.
    """
    clusters, reference = np.asarray(clusters), np.asarray(reference)
    if clusters.shape != reference.shape:
        raise ValueError(f"oracle: cluster map {clusters.shape} and reference label {reference.shape} differ in shape")
    k = int(clusters.max()) + 1 if clusters.size else 1
    out = np.zeros(clusters.shape, np.uint8)
    for c in range(1, int(num_classes)):
        counts = np.bincount(clusters[reference == c].ravel(), minlength=k)
        if counts.sum() > 0:
            out[clusters == int(np.argmax(counts))] = c
    return out


def class_fractions(cluster_ids: np.ndarray, labels: np.ndarray, n_clusters: int, num_classes: int) -> np.ndarray:
    """``(n_clusters, num_classes)`` share of each class among each cluster's pixels (rows of
    empty clusters are 0). Labels outside ``[0, num_classes)`` are ignored."""
    ok = (labels >= 0) & (labels < num_classes)
    flat = cluster_ids[ok].astype(np.int64) * int(num_classes) + labels[ok].astype(np.int64)
    counts = np.bincount(flat, minlength=int(n_clusters) * int(num_classes)).reshape(int(n_clusters), int(num_classes))
    return (counts / np.maximum(counts.sum(1, keepdims=True), 1)).astype(np.float32)


class ClusterAssignment(nn.Module):
    """Labelled-cluster references as buffers (saved with the run's checkpoint): ``descriptors``
    ``(M, L)`` (unit mean embeddings) and ``fractions`` ``(M, K)``. Empty until :meth:`fit`."""

    def __init__(self, dim: int, num_classes: int, k: int = 3):
        super().__init__()
        self.k, self.num_classes = int(k), int(num_classes)
        self.register_buffer("descriptors", torch.zeros(0, int(dim)))
        self.register_buffer("fractions", torch.zeros(0, int(num_classes)))

    def fit(self, descriptors: np.ndarray, fractions: np.ndarray) -> ClusterAssignment:
        """Store the references (descriptors are L2-normalised here).

        Raises:
            ValueError: no references, or shapes that do not match.
        """
        d = torch.as_tensor(np.asarray(descriptors, np.float32))
        f = torch.as_tensor(np.asarray(fractions, np.float32))
        if d.ndim != 2 or d.shape[0] == 0 or f.shape != (d.shape[0], self.num_classes):
            raise ValueError(f"cluster assignment needs (M, L) descriptors and (M, {self.num_classes}) fractions with "
                             f"M >= 1, got {tuple(d.shape)} and {tuple(f.shape)}")
        self.descriptors = F.normalize(d, dim=1).to(self.descriptors.device)
        self.fractions = f.to(self.fractions.device)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("descriptors", "fractions"):  # the number of references is known only from the checkpoint
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def predict(self, descriptors: np.ndarray) -> np.ndarray:
        """Class ``(N,)`` of each cluster described by ``descriptors`` ``(N, L)``.

        Raises:
            RuntimeError: :meth:`fit` was never called.
        """
        if self.descriptors.shape[0] == 0:
            raise RuntimeError("cluster assignment has no labelled clusters (fit was not called)")
        q = F.normalize(torch.as_tensor(np.asarray(descriptors, np.float32)).to(self.descriptors.device), dim=1)
        kk = max(1, min(self.k, self.descriptors.shape[0]))
        idx = (q @ self.descriptors.T).topk(kk, dim=1).indices
        share = self.fractions[idx].mean(1)  # (N, K)
        return share.argmax(1).cpu().numpy().astype(np.int64)  # first maximum: background wins ties
