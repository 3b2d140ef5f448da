"""Embedding matching (Xie et al., MIDL 2024, arXiv:2407.04638): the method (:mod:`.method`) and its
class-balanced embedding memory bank (:mod:`.bank`). Importing the package registers the method."""

from .bank import EmbeddingBank, sample_per_class
from .method import (
           EmbeddingMatching,
           EmbeddingUNet,
           gather_voxels,
           mc_dropout_probabilities,
           normalised_entropy,
)

__all__ = ["EmbeddingBank", "EmbeddingMatching", "EmbeddingUNet", "gather_voxels", "mc_dropout_probabilities",
           "normalised_entropy", "sample_per_class"]
