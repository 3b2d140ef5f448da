"""Networks built from a plan (MONAI DynUNet) and helpers shared by methods."""

from .dynunet import build_network, count_parameters, network_kwargs

__all__ = ["build_network", "count_parameters", "network_kwargs"]
