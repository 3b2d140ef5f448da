"""The memory model against memory measured for a forward + backward pass (within +-25 %)."""

import pytest

from medseg_bench.planning.calibration import measure_forward_backward_memory
from medseg_bench.planning.costs import estimate_memory_gb, forward_backward_bytes, gpu_step_time_s
from medseg_bench.planning.topology import get_topology, network_cost, stage_filters

# measured one after the other in one subprocess (peak reset before each step)
CONFIGS = [((1.0, 1.0), (96, 96), 4, 16, 1), ((1.0, 1.0, 1.0), (32, 32, 32), 2, 32, 1),
           ((4.0, 1.0, 1.0), (16, 96, 96), 2, 16, 1)]


def _cost(spacing, patch, base, cin):
    t = get_topology(spacing, patch)
    return network_cost(t, stage_filters(t.num_stages, base, 320), cin, 2)


@pytest.mark.slow
def test_memory_estimate_within_25_percent_of_measured():
    pytest.importorskip("monai")
    measured = measure_forward_backward_memory(CONFIGS)
    for (spacing, patch, batch, base, cin), m in zip(CONFIGS, measured):
        estimate = forward_backward_bytes(_cost(spacing, patch, base, cin), batch, "cpu")
        assert 0.75 <= estimate / m <= 1.25, (patch, batch, base, estimate / 1e6, m / 1e6)


def test_memory_and_time_models_scale_sensibly():
    c = _cost((1.0, 1.0, 1.0), (128, 128, 128), 32, 1)
    # nnU-Net's reference 3D network (128^3, batch 2, 32 base features) fills its 8 GB target
    assert estimate_memory_gb(c, 2, "gpu") == pytest.approx(8.0, rel=0.1)
    assert 0.3 < gpu_step_time_s(c, 2) < 0.7
    assert estimate_memory_gb(c, 4, "cpu") > estimate_memory_gb(c, 2, "cpu") > estimate_memory_gb(c, 0, "cpu") > 0
    with pytest.raises(ValueError, match="device"):
        estimate_memory_gb(c, 2, "tpu")
