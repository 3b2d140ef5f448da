"""Aggregating per-case metrics without letting inf/NaN silently improve a mean (``METRICS.md``).

* ``+inf`` (exactly one mask empty) is replaced by the image diagonal in spacing units and counted
  as a failure;
* NaN (both masks empty: nothing to score) is left out and counted.

JSON has no inf/NaN: records store them as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (not
``null``, which would lose the difference between "failed" and "nothing to score"); use
:func:`encode_value` / :func:`decode_value` to convert.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Aggregate", "aggregate_with_failures", "decode_value", "encode_value", "image_diagonal"]


def image_diagonal(shape, spacing=None) -> float:
    """Diagonal of the image extent, ``sqrt(sum((shape_i * spacing_i) ** 2))``, in spacing units.

    It bounds every finite surface distance in the image, so replacing an inf by it never scores a
    failed case better than a finite one.
    """
    shape = np.asarray(shape, np.float64)
    sp = (
        np.ones_like(shape)
        if spacing is None
        else np.broadcast_to(np.asarray(spacing, np.float64), shape.shape)
    )
    return float(np.sqrt(np.sum((shape * sp) ** 2)))


@dataclass(frozen=True)
class Aggregate:
    """Mean over cases with failures counted: ``n`` values used (incl. replaced infs)."""

    mean: float
    n: int
    n_inf: int
    n_nan: int

    def to_dict(self) -> dict:
        return asdict(self)


def aggregate_with_failures(values, diagonal=math.inf) -> Aggregate:
    """Mean of per-case values with the leaderboard's rule for non-finite ones.

    Args:
        values: per-case metric values (floats; may hold inf and NaN; ``"inf"``/``"nan"`` strings
            from a JSON record are accepted too).
        diagonal: the value an inf is replaced with: a scalar or one per value (each case's image
            diagonal in spacing units, :func:`image_diagonal`). For metrics that cannot be inf
            (Dice, NSD) it is never used.

    Returns:
        :class:`Aggregate` (``mean`` NaN when no value is left).

    Example:
        >>> aggregate_with_failures([1.0, float("inf"), float("nan")], diagonal=[10.0, 20.0, 30.0])
        Aggregate(mean=10.5, n=2, n_inf=1, n_nan=1)
    """
    v = np.array([decode_value(x) for x in np.ravel(values)], np.float64)
    diag = np.broadcast_to(np.asarray(diagonal, np.float64), v.shape)
    is_nan = np.isnan(v)
    is_inf = np.isinf(v)
    if np.any(is_inf & ~np.isfinite(diag)):
        raise ValueError("an inf value needs a finite diagonal to replace it")
    v = np.where(is_inf, diag, v)[~is_nan]
    mean = float(v.mean()) if v.size else math.nan
    return Aggregate(mean, int(v.size), int(is_inf.sum()), int(is_nan.sum()))


def encode_value(v):
    """A metric value for JSON: finite floats/ints as they are, inf/NaN as ``"inf"``/``"-inf"``/``"nan"``."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if v is None:
        return None
    f = float(v)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f


def decode_value(v) -> float:
    """Inverse of :func:`encode_value` for numbers (``None`` reads as NaN)."""
    if v is None:
        return math.nan
    if isinstance(v, str):
        return float(v)  # float() parses "inf", "-inf", "nan"
    return float(v)
