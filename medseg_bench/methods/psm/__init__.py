"""PSM — prior self-activation maps for label-free nuclei segmentation (Chen et al., arXiv:2210.07862;
MICCAI 2023, arXiv:2308.11144). Importing this package registers the ``psm`` method.

Modules: :mod:`.activation` (rotation-consistency loss, Grad-CAM), :mod:`.pseudo_masks` (colour map,
k-means, colour prior, clean-up), :mod:`.voronoi` (peaks, Voronoi labels), :mod:`.stages` (the cached
budget-independent stages), :mod:`.method` (the :class:`Psm` method and its documentation).
"""

from .activation import grad_cam, rotate180, rotation_consistency_loss
from .method import Psm
from .pseudo_masks import (
    colour_prior_cluster,
    fill_small_holes,
    jet,
    pseudo_mask,
    remove_small_objects,
    scale_factor,
)
from .voronoi import detect_points, voronoi_labels, voronoi_regions

__all__ = [
    "Psm",
    "colour_prior_cluster",
    "detect_points",
    "fill_small_holes",
    "grad_cam",
    "jet",
    "pseudo_mask",
    "remove_small_objects",
    "rotate180",
    "rotation_consistency_loss",
    "scale_factor",
    "voronoi_labels",
    "voronoi_regions",
]
