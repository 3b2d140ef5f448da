"""Networks built from a plan (MONAI DynUNet) and helpers shared by methods."""

from .dynunet import build_network, count_parameters, network_kwargs
from .resnet import build_resnet_classifier

__all__ = ["build_network", "build_resnet_classifier", "count_parameters", "network_kwargs"]
