"""DAE pre-training + fine-tuning (Holzschuh et al., MIDL 2023; DAE of Kascenas et al., MIDL 2022).

* :mod:`._noise`: coarse noise, the label-free foreground mask, the anomaly map and its threshold.
* :mod:`._stage`: the DAE (:class:`~._stage.DaePretrain`) and its budget-independent cached stage
  (trained once per dataset, preset, configuration, seed under ``ctx.stage_dir``, shared by every
  budget of ``dae_finetune`` and by ``dae_anomaly``).
* :mod:`.anomaly`: ``dae_anomaly`` (unsupervised, budget 0).
* :mod:`.finetune`: ``dae_finetune`` (semi-supervised, budgets >= 1).

Importing this package registers both methods.
"""

from . import anomaly, finetune  # noqa: F401  (registers the methods)
from ._noise import coarse_noise, foreground_mask, otsu_threshold

__all__ = ["anomaly", "coarse_noise", "finetune", "foreground_mask", "otsu_threshold"]
