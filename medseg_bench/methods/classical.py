"""Classical unsupervised baselines: Otsu threshold, k-means on intensities, Chan–Vese.

The bar every unsupervised deep method must clear. None of them trains (``trains = False``): each
segments every test image on its own, from the preprocessed image the engine hands to
``predict_probabilities`` (the plan's normalisation is monotone per channel, so thresholds and
clusters are those of the raw intensities), and returns one-hot probabilities ``(2, *spatial)`` that
go through the same export (undo crop / resampling) and evaluation as every other method.

Which phase is the foreground is decided by a label-free rule fixed from the plan's modality
(:mod:`medseg_bench.methods._polarity`): brighter for CT and SPECT, darker for fundus
autofluorescence and H&E, smaller otherwise; ``polarity=`` overrides it. Intensities are first
clipped to each image's 0.5–99.5 percentiles (:func:`robust_clip`). 3D volumes are segmented as
volumes (Otsu threshold and k-means clusters per volume, Chan–Vese in 3D). All three are binary
methods: a dataset with more than one foreground class is refused at ``setup``.

* ``otsu`` — N. Otsu, "A threshold selection method from gray-level histograms", IEEE Trans. SMC
  9(1), 1979 (``skimage.filters.threshold_otsu`` on the channel mean).
* ``kmeans`` — k-means (Lloyd 1982; scikit-learn ``KMeans``, k-means++ init) on the voxels'
  channel vectors (intensity, or RGB colour), ``k = 3`` by default: background / tissue / target
  is the common three-phase layout (air, soft tissue, bone in CT and SPECT; white background, eosin,
  haematoxylin in H&E); the rule picks one cluster.
* ``chan_vese`` — Chan & Vese, "Active contours without edges", IEEE TIP 10(2), 2001, solved through
  its convex relaxation (Chan, Esedoḡlu & Nikolova 2006) with a primal–dual method, fast enough
  for 3D (:mod:`medseg_bench.methods._chan_vese`; scikit-image's level-set solvers via ``solver=``).
"""

from __future__ import annotations

import time

import numpy as np

from ._chan_vese import SOLVERS, chan_vese_phases
from ._polarity import RULE_TEXT, choose_phase, polarity_rule
from .base import Method
from .registry import register_method

__all__ = ["ChanVese", "ClassicalMethod", "KMeansClusters", "OtsuThreshold", "kmeans_labels", "otsu_phases",
           "phase_mask", "robust_clip"]


def _grey(image: np.ndarray) -> np.ndarray:
    """Channel mean ``(*spatial)`` float32 of ``(C, *spatial)``."""
    return np.asarray(image, dtype=np.float32).mean(axis=0)


def robust_clip(image: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """Clip each channel of ``(C, *spatial)`` to its own ``lower``–``upper`` percentiles (float32).

    All three baselines fit squared-error models (Otsu's between-class variance, k-means, the
    Chan–Vese fidelity terms), so a few extreme voxels — hot lesions in SPECT, metal in CT, specular
    highlights — can claim a class of their own. Checked on the training cases of the built-in
    datasets (never the test cases): without the clip, k-means on bone SPECT picks the hot lesions
    only (Dice 0.00 vs 0.78 with it); elsewhere it changes little.
    """
    x = np.asarray(image, dtype=np.float32)
    flat = x.reshape(x.shape[0], -1)
    lo = np.percentile(flat, lower, axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    hi = np.percentile(flat, upper, axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    return np.clip(x, lo, hi).astype(np.float32)


def phase_mask(phases: np.ndarray, image: np.ndarray, rule: str) -> np.ndarray:
    """Foreground mask (bool, spatial) from a phase map (ints ``0..k-1``) and the rule.

    Phase means are taken on the channel mean of ``image (C, *spatial)``.
    """
    phases = np.asarray(phases)
    grey = _grey(image)
    k = int(phases.max()) + 1 if phases.size else 1
    sizes = np.bincount(phases.ravel(), minlength=k).astype(float)
    sums = np.bincount(phases.ravel(), weights=grey.ravel().astype(np.float64), minlength=k)
    means = np.divide(sums, sizes, out=np.zeros(k), where=sizes > 0)
    return phases == choose_phase(means, sizes, rule)


def otsu_phases(image: np.ndarray) -> np.ndarray:
    """Phase map (0 below / 1 above Otsu's threshold of the channel mean) of ``(C, *spatial)``; a
    constant image is one phase."""
    from skimage.filters import threshold_otsu

    grey = _grey(image)
    if grey.size == 0 or grey.min() == grey.max():
        return np.zeros(grey.shape, np.int64)
    return (grey > threshold_otsu(grey)).astype(np.int64)


def kmeans_labels(image: np.ndarray, k: int = 3, max_samples: int = 50_000, seed: int = 0) -> np.ndarray:
    """k-means cluster map ``(*spatial)`` of the voxels' channel vectors of ``(C, *spatial)``.

    Centres are fitted on at most ``max_samples`` voxels drawn with ``seed`` (k-means++ init, 3
    restarts), then every voxel gets its nearest centre. Channels are used as they are (the plan's
    normalisation already puts them on comparable scales).
    """
    from sklearn.cluster import KMeans

    x = np.asarray(image, dtype=np.float32).reshape(image.shape[0], -1).T
    n_distinct = min(len(np.unique(x[: min(len(x), 4096)], axis=0)), k)
    if n_distinct < 2:
        return np.zeros(image.shape[1:], np.int64)
    rng = np.random.default_rng(seed)
    sample = x if len(x) <= max_samples else x[rng.choice(len(x), max_samples, replace=False)]
    km = KMeans(n_clusters=int(k), n_init=3, random_state=seed).fit(sample)
    return km.predict(x).reshape(image.shape[1:]).astype(np.int64)


class ClassicalMethod(Method):
    """Base of the training-free baselines: no network, no optimiser, one mask per image.

    Subclasses implement :meth:`phases` (an integer phase map of one preprocessed image).
    """

    family = "classical"
    dims = (2, 3)
    needs_labels = False
    uses_unlabelled = False
    budgets = "zero_only"
    trains = False
    class_rule = "label-free: " + RULE_TEXT
    #: ``clip_percentiles``: per-channel intensity clip before segmenting (:func:`robust_clip`); None: off
    hparams = {"polarity": "auto", "clip_percentiles": (0.5, 99.5)}

    def setup(self, ctx) -> None:
        if ctx.num_classes != 2:
            raise ValueError(f"{self.name} segments one foreground phase; dataset {ctx.dataset!r} has "
                             f"{ctx.num_classes - 1} foreground classes")
        self.rule = polarity_rule(ctx.plans, self.hparams.get("polarity", "auto"), default="smaller")

    @classmethod
    def estimate_cost_s(cls, plans: dict, preset: str, config: str, budget) -> float:
        """Rough cell time for the benchmark runner: no training, seconds of inference."""
        return 2.0

    def fit(self, ctx) -> dict:
        """Nothing to learn. Writes a final checkpoint (the settings, no weights) so that a finished
        run looks like every other one (``medseg-bench predict`` loads it)."""
        from ..training.checkpoint import save_checkpoint
        from ..training.loop import CHECKPOINT_FINAL

        if ctx.run_dir is not None:
            save_checkpoint(ctx.run_dir / CHECKPOINT_FINAL, {"iteration": 0, "method": self.state_dict(),
                                                             "train_time_s": 0.0, "settings": ctx.settings,
                                                             "rule": self.rule})
        return {"iterations": 0, "train_time_s": 0.0}

    def phases(self, image: np.ndarray, ctx) -> np.ndarray:
        raise NotImplementedError

    def predict_probabilities(self, image: np.ndarray, ctx) -> np.ndarray:
        """One-hot ``(2, *spatial)`` float32: background, foreground (the rule's phase)."""
        if not hasattr(self, "rule"):
            self.setup(ctx)
        image = np.asarray(image, dtype=np.float32)
        clip = self.hparams.get("clip_percentiles")
        if clip:
            image = robust_clip(image, *clip)
        t0 = time.perf_counter()
        fg = phase_mask(self.phases(image, ctx), image, self.rule)
        self.last_seconds = time.perf_counter() - t0
        return np.stack([~fg, fg]).astype(np.float32)


@register_method
class OtsuThreshold(ClassicalMethod):
    """Otsu's threshold of each image's channel mean; the rule picks the side."""

    name = "otsu"
    citation = ("baseline: N. Otsu, A threshold selection method from gray-level histograms, IEEE Trans. "
                "Systems, Man, and Cybernetics 9(1):62-66 (1979), doi:10.1109/TSMC.1979.4310076")

    def phases(self, image, ctx):
        return otsu_phases(image)


@register_method
class KMeansClusters(ClassicalMethod):
    """k-means (k = 3) on each image's voxel channel vectors; the rule picks one cluster."""

    name = "kmeans"
    citation = ("baseline: k-means clustering of intensities (S. Lloyd, Least squares quantization in PCM, "
                "IEEE Trans. Information Theory 28(2):129-137, 1982; k-means++ init, Arthur & Vassilvitskii, SODA 2007)")
    hparams = {**ClassicalMethod.hparams, "k": 3, "max_samples": 50_000}

    def phases(self, image, ctx):
        k = int(self.hparams["k"])
        if k < 2:
            raise ValueError(f"kmeans needs k >= 2, got {k}")
        return kmeans_labels(image, k, int(self.hparams["max_samples"]), seed=int(getattr(ctx, "seed", 0)))


@register_method
class ChanVese(ClassicalMethod):
    """Two-phase Chan–Vese (length + region terms) of each image; the rule picks the phase."""

    name = "chan_vese"
    citation = ("baseline: T. F. Chan and L. A. Vese, Active contours without edges, IEEE Trans. Image Processing "
                "10(2):266-277 (2001), doi:10.1109/83.902291; convex solver: Chan, Esedoglu & Nikolova, SIAM J. "
                "Appl. Math. 66(5) (2006) with Chambolle & Pock, JMIV 40 (2011)")
    #: ``mu``: length weight in image-variance units (see ``_chan_vese.standardise``). 2 (our choice,
    #: set a priori on synthetic data, never on a benchmark's labels): i.i.d. noise as strong as the
    #: image's own spread does not break into speckle, while a region of radius R voxels and contrast
    #: Δ image standard deviations survives when Δ² ≳ d·μ/R (d spatial axes). ``iterations``: total
    #: primal-dual iterations; ``solver``: "convex" | "morphological" | "skimage".
    hparams = {**ClassicalMethod.hparams, "mu": 2.0, "iterations": 120, "solver": "convex"}

    def phases(self, image, ctx):
        solver = self.hparams["solver"]
        if solver not in SOLVERS:
            raise ValueError(f"chan_vese solver must be one of {SOLVERS}, got {solver!r}")
        inside = chan_vese_phases(image, solver=solver, mu=float(self.hparams["mu"]),
                                  iterations=int(self.hparams["iterations"]))
        return inside.astype(np.int64)
