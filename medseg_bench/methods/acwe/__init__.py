"""ACWE-ConvNet (Chen & Frey, MIDL 2020): ``acwe``, ``acwe_finetune``, ``acwe_joint``, ``acwe_unet_finetune``.

Importing the package registers the three methods (:mod:`.method`, :mod:`.joint`, :mod:`.unet`); the losses and the paper's
input scaling are in :mod:`.losses`, the network in :mod:`medseg_bench.networks.r2net`.
"""

from .joint import AcweJoint
from .losses import active_contour_loss, acwe_energy, minmax_normalise
from .method import AcweConvNet, AcweFinetune, MinMaxFolder, matched_iterations
from .unet import AcweUNetFinetune

__all__ = ["AcweConvNet", "AcweFinetune", "AcweJoint", "AcweUNetFinetune", "MinMaxFolder", "active_contour_loss", "acwe_energy",
           "matched_iterations", "minmax_normalise"]
