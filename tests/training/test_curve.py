"""The loss curve and the convergence check (medseg_bench.training.curve)."""

import math

import pytest

from medseg_bench.training.curve import LossCurve, convergence


def _curve(values, windows=50):
    c = LossCurve(len(values), windows=windows)
    for i, v in enumerate(values, 1):
        c.add(i, v)
    return c


def test_windows_are_means_and_the_last_may_be_short():
    c = _curve([1.0, 3.0, 5.0, 7.0, 9.0], windows=2)  # window 3: [1, 3, 5] and [7, 9]
    assert c.window == 3 and c.points() == [[3, 3.0], [5, 8.0]]
    c.add(6, math.nan)  # skipped
    assert c.points() == [[3, 3.0], [5, 8.0]]
    d = LossCurve(5, windows=2)
    d.load_state_dict(c.state_dict())
    assert d.points() == c.points()


@pytest.mark.parametrize("tail, converged", [(1.0, True), (0.96, True), (0.9, False), (1.2, True)])
def test_convergence_compares_70_80_with_90_100_percent(tail, converged):
    # 100 iterations: loss 1.0 up to 80 %, then `tail` for the last 20 %
    values = [2.0] * 50 + [1.0] * 30 + [tail] * 20
    out = convergence(_curve(values).points(), 100, 2)
    assert out["loss_at_80pct"] == pytest.approx(1.0) and out["loss_at_100pct"] == pytest.approx(tail)
    assert out["last_20pct_improvement"] == pytest.approx(1.0 - tail) and out["converged"] is converged
    assert _curve(values).summary()["convergence"] == out


def test_decaying_loss_is_not_converged_until_flat():
    fast = [math.exp(-i / 20) + 0.1 for i in range(1000)]  # flat long before the end
    slow = [math.exp(-i / 800) + 0.1 for i in range(1000)]  # still falling
    assert convergence(_curve(fast).points(), 1000, 20)["converged"] is True
    assert convergence(_curve(slow).points(), 1000, 20)["converged"] is False


def test_too_short_to_tell():
    assert convergence([], 0)["converged"] is None
    assert convergence(_curve([1.0] * 5).points(), 5, 1)["converged"] is None
