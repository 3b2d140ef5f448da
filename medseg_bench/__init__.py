"""medseg_bench: a self-configuring benchmark suite for unsupervised and semi-supervised medical image
segmentation (nnU-Net-style planning, controlled label budgets, exact metrics, leaderboards)."""

__version__ = "0.1.0"
