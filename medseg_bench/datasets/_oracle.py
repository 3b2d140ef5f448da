"""The threshold oracle: how well can the single best global intensity threshold segment an image?

Used to check that a simulated dataset is not trivially solved by thresholding (DATASETS.md, criterion
(a)) and to report the same number for real data. The oracle is deliberately optimistic: it sees the
label and picks, per image, the threshold *and* the polarity (foreground brighter or darker than the
threshold) that maximise Dice. A learned method must beat it to be doing more than intensity windowing.

The search is exact: the voxels are sorted once per polarity, and the Dice of every distinct
threshold (every cut between two different sorted values, plus "nothing" and "everything") comes
from cumulative sums of the sorted label, ``Dice(k) = 2 * TP(k) / (k + P)`` for the ``k`` brightest
(or darkest) voxels. Cost: one sort, ``O(n log n)``; about 0.3 s for a 128³ volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ThresholdResult", "best_threshold", "best_threshold_dice", "grey"]


@dataclass(frozen=True)
class ThresholdResult:
    """The oracle's choice for one image.

    Attributes:
        dice: the best Dice in [0, 1].
        threshold: the intensity cut; foreground is ``image >= threshold`` for polarity ``"bright"``
            and ``image <= threshold`` for ``"dark"`` (``±inf`` when predicting nothing is best).
        polarity: ``"bright"`` or ``"dark"``.
    """

    dice: float
    threshold: float
    polarity: str


def grey(image: np.ndarray, label_ndim: int) -> np.ndarray:
    """Intensity image with the label's dimensionality: a channel-first image ``(C, *spatial)`` with
    one more axis than the label is averaged over its channels (RGB -> grey as the channel mean)."""
    image = np.asarray(image)
    if image.ndim == label_ndim + 1:
        return image.astype(np.float64).mean(axis=0)
    if image.ndim != label_ndim:
        raise ValueError(f"image of shape {image.shape} does not match a {label_ndim}D label")
    return image


def _best_one_polarity(values_sorted: np.ndarray, fg_sorted: np.ndarray, positives: int) -> tuple[float, int]:
    """Best Dice over "take the first k voxels" for k at every cut between distinct sorted values.

    Returns (dice, k). k = 0 (predict nothing) scores 1 when there are no positives, else 0.
    """
    n = values_sorted.size
    tp = np.cumsum(fg_sorted, dtype=np.int64)  # tp[k-1] = TP when the first k voxels are predicted
    # valid cuts: after position k-1 where the next value differs, and k = n
    boundary = np.empty(n, dtype=bool)
    boundary[:-1] = values_sorted[1:] != values_sorted[:-1]
    boundary[-1] = True
    ks = np.flatnonzero(boundary) + 1
    dice = 2.0 * tp[ks - 1] / (ks + positives)
    best = int(np.argmax(dice))
    empty_score = 1.0 if positives == 0 else 0.0
    if empty_score >= dice[best]:
        return empty_score, 0
    return float(dice[best]), int(ks[best])


def best_threshold(image: np.ndarray, label: np.ndarray, foreground: int | None = None) -> ThresholdResult:
    """The best single global threshold for one image, either polarity, chosen with the label.

    Args:
        image: intensities, same spatial shape as ``label``; or channel first ``(C, *spatial)``
            (e.g. RGB ``(3, y, x)``), which is turned to grey as the mean of its channels.
        label: integer label map.
        foreground: the class to score; ``None`` scores ``label > 0`` (all foreground classes).

    Returns:
        :class:`ThresholdResult`. An empty label scores Dice 1 (the empty prediction is allowed);
        a constant image scores the Dice of predicting everything.

    Raises:
        ValueError: shapes do not match, or the image holds NaN.
    """
    label = np.asarray(label)
    img = grey(image, label.ndim)
    if img.shape != label.shape:
        raise ValueError(f"image shape {img.shape} differs from label shape {label.shape}")
    fg = (label > 0) if foreground is None else (label == foreground)
    values = img.ravel()
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError("image contains NaN")
    fg = fg.ravel()
    positives = int(fg.sum())
    order = np.argsort(values, kind="stable")
    asc_vals, asc_fg = values[order], fg[order].astype(np.int8)
    best = ThresholdResult(1.0 if positives == 0 else 0.0, float("inf"), "bright")
    # bright foreground: take the k largest values
    d, k = _best_one_polarity(asc_vals[::-1], asc_fg[::-1], positives)
    if d > best.dice:
        best = ThresholdResult(d, float(asc_vals[::-1][k - 1]), "bright")
    d, k = _best_one_polarity(asc_vals, asc_fg, positives)
    if d > best.dice:
        best = ThresholdResult(d, float(asc_vals[k - 1]), "dark")
    return best


def best_threshold_dice(image: np.ndarray, label: np.ndarray, foreground: int | None = None) -> float:
    """Dice of the best single global threshold (either polarity, chosen with the label) for one image.

    See :func:`best_threshold` for the arguments; RGB ``(C, *spatial)`` images are turned to grey as
    the mean of their channels. Average the per-image values over a dataset's cases to report it.
    """
    return best_threshold(image, label, foreground).dice
