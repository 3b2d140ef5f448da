"""medseg_bench: a self-configuring benchmark suite for unsupervised and semi-supervised medical image
segmentation (nnU-Net-style planning, controlled label budgets, exact metrics, leaderboards)."""

__version__ = "0.1.0"

import os as _os

# torch's OpenMP worker threads spin-wait between parallel regions by default; on a CPU shared with
# other processes that collapses throughput (measured here: a 2-thread DynUNet forward 10x slower
# than 1 thread under load, and 7x faster with passive waiting). libgomp reads this once, when torch
# is first imported, so it must be set before that; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
