"""CUTS (Liu et al., MICCAI 2024, arXiv:2209.11359): stride-1 contrastive + reconstruction encoder,
per-case clustering of the pixel embeddings, and three ways to name the foreground cluster(s).

Modules: :mod:`.sampler` (vectorised anchor/positive sampling with SSIM), :mod:`.losses` (NT-Xent,
reconstruction), :mod:`.stage` (the shared, cached encoder training), :mod:`.clustering` (PHATE +
k-means, PCA + k-means), :mod:`.rules` (label-free, oracle, learned assignment) and
:mod:`.method` (the registered rows ``cuts``, ``cuts_oracle``, ``cuts_assign``). The network is
:mod:`medseg_bench.networks.cuts_encoder`. The method docstrings in ``method.py`` state the rules.
"""

from .method import Cuts, CutsAssign, CutsOracle

__all__ = ["Cuts", "CutsAssign", "CutsOracle"]
