"""A class-balanced memory bank of L2-normalised voxel embeddings and the matching rules used by
``embedding_matching`` (Xie et al., MIDL 2024, arXiv:2407.04638).

The bank holds, for each class ``k``, a first-in-first-out ring of at most ``size`` reference
embeddings (unit vectors of dimension ``dim``) taken from labelled voxels. Equal capacity and equal
per-step sampling per class make it class-balanced: a rare class (a thin bone, a small lesion) has as
many references as the background once the rings are full.

Matching a query embedding ``q`` (unit vector):

* ``"knn"``: cosine similarity to every stored reference, the ``k`` most similar vote with weights
  ``exp(s / temperature)``; the label is the heaviest class;
* ``"prototype"``: cosine similarity to each class's prototype (the re-normalised mean of its
  references); the label is the most similar prototype.

Class-balanced references make the vote estimate the class *given equal priors*: a query that looks
equally like both classes gets half of its vote from a rare class's references. With ``prior`` (the
class frequencies of the labelled voxels, which the bank tracks in :attr:`EmbeddingBank.class_counts`)
the vote shares are multiplied by the priors and renormalised — the Bayes correction for sampling
classes in equal numbers (as in classifiers trained on re-balanced data, e.g. Saerens, Latinne &
Decaestecker, Neural Computation 2002). Without it, ambiguous voxels drift to the rare class.

Which labelled voxels enter the bank: :func:`sample_per_class`, optionally with hard-example
sampling (a share of each class's samples are the voxels the teacher gets most wrong), so that the
references also cover the look-alikes of other classes (e.g. femur and sacrum, background that
looks like the hip bone) and not only the easy bulk of each class.

Randomness (which voxels enter the bank) uses torch's global generator (the engine's checkpoints
capture it); :meth:`EmbeddingBank.state_dict` holds everything a resumed run needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["EmbeddingBank", "sample_per_class"]


def sample_per_class(labels: torch.Tensor, num_classes: int, n: int, hardness: torch.Tensor | None = None,
                     hard_fraction: float = 0.0) -> torch.Tensor:
    """Indices into the flat ``labels`` (1-D long) of at most ``n`` voxels of each class present,
    concatenated class by class. Values outside ``[0, num_classes)`` are never chosen.

    With ``hardness`` (1-D, same length; larger = harder) and ``hard_fraction`` in (0, 1], the
    ``round(n * hard_fraction)`` hardest voxels of each class are taken first and the rest of the
    class's share is drawn at random from its other voxels (hard-example sampling); otherwise all are
    drawn at random.
    """
    out = []
    n_hard = int(round(n * float(hard_fraction))) if hardness is not None else 0
    for c in range(num_classes):
        idx = torch.nonzero(labels == c, as_tuple=False).flatten()
        if idx.numel() == 0:
            continue
        if idx.numel() > n:
            if n_hard > 0:
                order = torch.argsort(hardness[idx], descending=True, stable=True)
                hard, rest = idx[order[:n_hard]], idx[order[n_hard:]]
                idx = torch.cat([hard, rest[torch.randperm(rest.numel(), device=idx.device)[: n - n_hard]]])
            else:
                idx = idx[torch.randperm(idx.numel(), device=idx.device)[:n]]
        out.append(idx)
    if not out:
        return torch.zeros(0, dtype=torch.long, device=labels.device)
    return torch.cat(out)


class EmbeddingBank:
    """Per-class FIFO rings of reference embeddings (see module docstring).

    Args:
        num_classes: K (background included). size: capacity per class. dim: embedding size.
    """

    def __init__(self, num_classes: int, size: int, dim: int, device=None):
        if num_classes < 2 or size < 1 or dim < 1:
            raise ValueError(f"EmbeddingBank needs num_classes >= 2, size >= 1, dim >= 1; got {num_classes}, {size}, {dim}")
        self.num_classes, self.size, self.dim = int(num_classes), int(size), int(dim)
        self.emb = torch.zeros(num_classes, size, dim, device=device)
        self.count = torch.zeros(num_classes, dtype=torch.long, device=device)
        self.ptr = torch.zeros(num_classes, dtype=torch.long, device=device)
        #: labelled voxels seen per class (all of each labelled batch, not only those stored): the prior
        self.class_counts = torch.zeros(num_classes, dtype=torch.float64, device=device)

    @torch.no_grad()
    def count_labels(self, labels: torch.Tensor) -> None:
        """Add a labelled batch's voxels (values outside ``[0, K)`` ignored) to :attr:`class_counts`."""
        flat = labels.reshape(-1)
        flat = flat[(flat >= 0) & (flat < self.num_classes)]
        self.class_counts += torch.bincount(flat, minlength=self.num_classes).to(self.class_counts)

    def class_prior(self) -> torch.Tensor | None:
        """Class frequencies ``(K,)`` of the labelled voxels counted so far (None before any)."""
        total = float(self.class_counts.sum())
        return (self.class_counts / total).float() if total > 0 else None

    # -- filling -------------------------------------------------------------------------------------
    @torch.no_grad()
    def add(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Append ``embeddings`` ``(M, dim)`` (unit vectors) with class ``labels`` ``(M,)`` to the
        rings (oldest entries are overwritten when a ring is full)."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim or labels.shape != embeddings.shape[:1]:
            raise ValueError(f"add: expected (M, {self.dim}) embeddings and (M,) labels, got "
                             f"{tuple(embeddings.shape)}, {tuple(labels.shape)}")
        for c in range(self.num_classes):
            e = embeddings[labels == c].to(self.emb.dtype)
            if e.shape[0] == 0:
                continue
            e = e[-self.size:]
            pos = (int(self.ptr[c]) + torch.arange(e.shape[0], device=self.emb.device)) % self.size
            self.emb[c, pos] = e
            self.ptr[c] = (self.ptr[c] + e.shape[0]) % self.size
            self.count[c] = min(self.size, int(self.count[c]) + e.shape[0])

    @property
    def filled_classes(self) -> int:
        """Number of classes with at least one reference."""
        return int((self.count > 0).sum())

    def ready(self) -> bool:
        """True when at least two classes have references (matching can discriminate)."""
        return self.filled_classes >= 2

    def _flat(self):
        """``(K*size, dim)`` references, ``(K*size,)`` labels and validity mask."""
        valid = torch.arange(self.size, device=self.emb.device)[None, :] < self.count[:, None]
        labels = torch.arange(self.num_classes, device=self.emb.device)[:, None].expand(-1, self.size)
        return self.emb.reshape(-1, self.dim), labels.reshape(-1), valid.reshape(-1)

    def prototypes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K, dim)`` unit prototypes (mean of each class's references, re-normalised) and the
        ``(K,)`` mask of classes that have references."""
        valid = torch.arange(self.size, device=self.emb.device)[None, :, None] < self.count[:, None, None]
        s = (self.emb * valid).sum(1)
        return F.normalize(s, dim=1), self.count > 0

    # -- matching ------------------------------------------------------------------------------------
    @torch.no_grad()
    def match(self, queries: torch.Tensor, rule: str = "knn", k: int = 10, temperature: float = 0.1,
              chunk: int = 4096, prior: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels ``(M,)`` long and confidences ``(M,)`` in [0, 1] (the winning class's share of the
        vote, or its softmax share over prototypes) of ``queries`` ``(M, dim)`` unit vectors.
        ``prior`` ``(K,)``: class priors that re-weight the shares (module docstring); None: equal.

        Raises:
            RuntimeError: the bank is not :meth:`ready`. ValueError: unknown ``rule``.
        """
        if not self.ready():
            raise RuntimeError("EmbeddingBank.match: fewer than two classes have references")
        if rule not in ("knn", "prototype"):
            raise ValueError(f"matching rule must be 'knn' or 'prototype', got {rule!r}")
        labels_out, conf_out = [], []
        if rule == "knn":
            refs, ref_labels, valid = self._flat()
            refs, ref_labels = refs[valid], ref_labels[valid]
            kk = max(1, min(int(k), refs.shape[0]))
        else:
            protos, pvalid = self.prototypes()
        for q in queries.split(chunk):
            q = q.to(self.emb.dtype)
            if rule == "knn":
                sim = q @ refs.T  # (m, R) cosine similarities
                top, idx = sim.topk(kk, dim=1)
                w = torch.exp((top - top[:, :1]) / temperature)  # stable: relative to the best match
                votes = torch.zeros(q.shape[0], self.num_classes, device=q.device, dtype=w.dtype)
                votes.scatter_add_(1, ref_labels[idx], w)
            else:
                votes = torch.softmax((q @ protos.T).masked_fill(~pvalid[None], float("-inf")) / temperature, dim=1)
            if prior is not None:
                votes = votes * prior.to(votes)[None, :]
            share = votes / votes.sum(1, keepdim=True).clamp_min(1e-30)
            conf, lab = share.max(1)
            labels_out.append(lab)
            conf_out.append(conf)
        if not labels_out:
            z = torch.zeros(0, device=self.emb.device)
            return z.long(), z
        return torch.cat(labels_out), torch.cat(conf_out)

    def contrastive_loss(self, anchors: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
        """Supervised multi-positive InfoNCE of ``anchors`` ``(M, dim)`` (unit, with gradient) against
        the bank (no gradient): mean over anchors of ``-log(sum_pos exp(s/T) / sum_all exp(s/T))``
        with positives = references of the anchor's class. Anchors whose class has no reference are
        left out; returns 0 (with gradient) when none remain or the bank is not :meth:`ready`."""
        if not self.ready() or anchors.shape[0] == 0:
            return anchors.sum() * 0.0
        refs, ref_labels, valid = self._flat()
        refs, ref_labels = refs[valid].detach(), ref_labels[valid]
        keep = self.count[labels] > 0
        if not bool(keep.any()):
            return anchors.sum() * 0.0
        a, y = anchors[keep].float(), labels[keep]
        logits = a @ refs.float().T / temperature
        pos = ref_labels[None, :] == y[:, None]
        return (torch.logsumexp(logits, dim=1) - torch.logsumexp(logits.masked_fill(~pos, float("-inf")), dim=1)).mean()

    # -- checkpoint ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"emb": self.emb.clone(), "count": self.count.clone(), "ptr": self.ptr.clone(),
                "class_counts": self.class_counts.clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`.

        Raises:
            ValueError: shapes differ from this bank's (another class count, size or dim).
        """
        if tuple(state["emb"].shape) != tuple(self.emb.shape):
            raise ValueError(f"EmbeddingBank state has shape {tuple(state['emb'].shape)}, this bank {tuple(self.emb.shape)}")
        dev = self.emb.device
        self.emb = state["emb"].to(dev).clone()
        self.count = state["count"].to(dev).clone()
        self.ptr = state["ptr"].to(dev).clone()
        if "class_counts" in state:  # absent in checkpoints written before the prior existed
            self.class_counts = state["class_counts"].to(dev).clone()
