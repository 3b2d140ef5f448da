"""CPU step-time model: measured once per machine, cached, and a shipped default.

On a CPU the limit of a training preset is time per step, not memory. The model is, per
dimensionality ``d`` (2 or 3),

    t = t0_d + a_d * GMAC + b_d * MAct + c_d * MAct_large

with GMAC the multiply-accumulates of one forward pass of the whole batch (10^9), MAct the activation
elements kept for backward (10^6) and MAct_large those of them in tensors over 16 MiB
(:func:`medseg_bench.planning.topology.network_cost`): convolutions cost arithmetic, normalisation /
activation / memory traffic cost per element, and once a feature map no longer fits the CPU's caches
every element costs more (on the reference machine a 2D step at 256^2 x batch 8 took 5.7x the time of
128^2 x batch 8, not 4x). Coefficients are fitted (non-negative
least squares on relative errors) to measured SGD steps of MONAI ``DynUNet`` with the threads one
runner worker gets (1: the runner starts one single-threaded worker per core).

* :data:`DEFAULT_MODEL` was fitted on the reference machine (2-core Xeon, torch 2.13 CPU, 1 thread);
  it reproduces ARCHITECTURE.md's "CPU reality" table (checked by ``tests/planning/test_calibration.py``).
  ``plan`` uses it when this machine has no calibration, and says so.
* ``medseg-bench plan --calibrate`` measures this machine (about a minute, imports torch) and caches
  the fit in ``$MEDSEG_CACHE_DIR`` (default ``$XDG_CACHE_HOME/medseg_bench`` or
  ``~/.cache/medseg_bench``) as ``cpu_calibration.json``, keyed by torch version, CPU model, core count
  and threads. Later plans read the cache without importing torch.

Batch size 1 is never measured: oneDNN runs 3D convolutions with batch 1 up to 3x slower per sample
than batch 2 on this machine, and plans use batch >= 2.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CALIBRATION_GRID",
    "CALIBRATION_VERSION",
    "DEFAULT_MODEL",
    "REFERENCE_TABLE",
    "StepTimeModel",
    "cache_path",
    "calibrate",
    "cpu_model",
    "fit_step_time",
    "load_step_time_model",
    "machine_key",
    "measure_forward_backward_memory",
    "measure_step_time",
]

CALIBRATION_VERSION = 1

#: ARCHITECTURE.md "CPU reality": (spacing, patch, batch, base features, in_channels, seconds per step)
REFERENCE_TABLE = [
    ((1.0, 1.0), (128, 128), 8, 16, 1, 0.41),
    ((1.0, 1.0), (128, 128), 8, 32, 1, 1.04),
    ((1.0, 1.0), (256, 256), 8, 16, 3, 2.58),
    ((1.0, 1.0, 1.0), (64, 64, 64), 2, 16, 1, 2.07),
    ((1.0, 1.0, 1.0), (48, 96, 96), 2, 16, 1, 3.94),
]

#: configurations measured by :func:`calibrate`: (spacing, patch, batch, base features)
CALIBRATION_GRID = [
    ((1.0, 1.0), (64, 64), 4, 8),
    ((1.0, 1.0), (64, 64), 8, 16),
    ((1.0, 1.0), (96, 96), 8, 16),
    ((1.0, 1.0), (128, 128), 4, 8),
    ((1.0, 1.0), (128, 128), 8, 16),
    ((1.0, 1.0), (128, 128), 8, 32),
    ((1.0, 1.0), (192, 192), 8, 16),
    ((1.0, 1.0), (256, 256), 2, 16),
    ((1.0, 1.0), (256, 256), 8, 16),
    ((1.0, 1.0, 1.0), (32, 32, 32), 2, 8),
    ((1.0, 1.0, 1.0), (32, 32, 32), 2, 16),
    ((1.0, 1.0, 1.0), (32, 32, 32), 4, 16),
    ((1.0, 1.0, 1.0), (48, 48, 48), 2, 16),
    ((3.0, 1.0, 1.0), (16, 64, 64), 2, 16),
    ((1.0, 1.0, 1.0), (32, 64, 64), 2, 16),
    ((1.0, 1.0, 1.0), (64, 64, 64), 2, 16),
]
FEATURE_CAP = 320
#: feature maps above this size (bytes, whole batch) count as beyond the cache
LARGE_MAP_BYTES = 16 * 2**20

#: Fitted on the reference machine with :func:`calibrate` (15 of 16 grid points within 10 %; the
#: 256^2 x 8 step 15 % under), then scaled per dimensionality (2D x0.86, 3D x0.89) so that it
#: reproduces ARCHITECTURE.md's table, measured on the same kind of machine when it was idle (our run
#: shared the two cores with other jobs): the table's five rows within 18 %.
DEFAULT_MODEL = {
    "source": "default (reference machine: 2-core Xeon, torch 2.13 CPU, 1 thread)",
    "threads": 1,
    "coefficients": {
        "2": {"t0": 0.007691, "per_gmac": 0.029043, "per_mact": 0.004903, "per_mact_large": 0.003255},
        "3": {"t0": 0.032597, "per_gmac": 0.009696, "per_mact": 0.009301, "per_mact_large": 0.007735},
    },
}


@dataclass(frozen=True)
class StepTimeModel:
    """Seconds per training step (forward + backward + SGD update, network only) on a CPU."""

    coefficients: dict
    source: str
    threads: int = 1

    def predict(self, dims: int, cost, batch_size: int) -> float:
        """Seconds for one step of a network of ``cost`` (:class:`~.topology.NetworkCost`) on a batch."""
        return self.predict_totals(dims, cost.macs * batch_size, cost.activations * batch_size,
                                   cost.activations_in_maps_over(batch_size, LARGE_MAP_BYTES))

    def predict_totals(self, dims: int, macs: float, activations: float, large_activations: float = 0.0) -> float:
        """Seconds for one step from whole-batch totals (forward MACs, stored activation elements)."""
        c = self.coefficients[str(dims)]
        return float(c["t0"] + c["per_gmac"] * macs / 1e9 + c["per_mact"] * activations / 1e6
                     + c.get("per_mact_large", 0.0) * large_activations / 1e6)

    def to_dict(self) -> dict:
        return {"source": self.source, "threads": self.threads, "coefficients": self.coefficients}

    @classmethod
    def from_dict(cls, d: dict) -> StepTimeModel:
        return cls(coefficients=d["coefficients"], source=d.get("source", "?"), threads=int(d.get("threads", 1)))


def cache_path() -> Path:
    """Where this machine's calibration is cached (see the module docstring)."""
    root = os.environ.get("MEDSEG_CACHE_DIR")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "medseg_bench")
    return Path(root) / "cpu_calibration.json"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(threads: int = 1) -> dict:
    """What a calibration is valid for; read without importing torch."""
    from importlib import metadata

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    return {
        "calibration_version": CALIBRATION_VERSION,
        "torch": torch_version,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
    }


def load_step_time_model(threads: int = 1) -> StepTimeModel:
    """This machine's cached calibration when its key matches, else :data:`DEFAULT_MODEL`."""
    path = cache_path()
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == machine_key(threads):
                return StepTimeModel.from_dict(cached["model"])
        except (ValueError, KeyError, TypeError):
            pass  # a broken cache is ignored, not fatal; --calibrate rewrites it
    return StepTimeModel.from_dict(DEFAULT_MODEL)


def fit_step_time(rows: list[dict]) -> dict:
    """Fit the per-dimensionality coefficients to measurements.

    Args:
        rows: ``{"dims", "macs", "activations", "large_activations", "seconds"}`` per measured
            configuration (``large_activations`` optional, default 0).

    Returns:
        The ``coefficients`` mapping of :class:`StepTimeModel`.
    """
    from scipy.optimize import nnls

    out = {}
    for dims in (2, 3):
        sel = [r for r in rows if r["dims"] == dims]
        if len(sel) < 4:
            raise ValueError(f"need at least 4 {dims}D measurements to fit the step-time model, got {len(sel)}")
        t = np.array([r["seconds"] for r in sel])
        x = np.stack([np.ones_like(t), [r["macs"] / 1e9 for r in sel], [r["activations"] / 1e6 for r in sel],
                      [r.get("large_activations", 0.0) / 1e6 for r in sel]], 1)
        coef, _ = nnls(x / t[:, None], np.ones_like(t))
        out[str(dims)] = {"t0": float(coef[0]), "per_gmac": float(coef[1]), "per_mact": float(coef[2]),
                          "per_mact_large": float(coef[3])}
    return out


def measure_step_time(spacing, patch, batch: int, base: int, in_channels: int = 1, out_channels: int = 2,
                      repeats: int = 3, threads: int | None = 1) -> dict:
    """Time SGD training steps of the planned ``DynUNet`` (imports torch and MONAI).

    Returns:
        ``{"dims", "patch", "batch", "base", "macs", "activations", "seconds"}``; ``seconds`` is the
        fastest of ``repeats`` steps after one warm-up step. With one thread it is the process's CPU
        time, which other processes competing for the cores barely inflate (wall time on a loaded
        2-core machine doubled where CPU time grew about 10 %); with more threads, wall time.
    """
    import torch
    from monai.networks.nets import DynUNet

    from .topology import get_topology, network_cost, stage_filters

    if threads:
        torch.set_num_threads(threads)
    topo = get_topology(spacing, patch)
    filters = stage_filters(topo.num_stages, base, FEATURE_CAP)
    cost = network_cost(topo, filters, in_channels, out_channels)
    net = DynUNet(len(patch), in_channels, out_channels, [list(k) for k in topo.kernel_sizes],
                  [list(s) for s in topo.strides], [list(s) for s in topo.strides[1:]], filters=filters, norm_name="instance")
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99, nesterov=True)
    x = torch.randn(batch, in_channels, *topo.patch_size)
    y = torch.randint(0, out_channels, (batch, *topo.patch_size))
    times = []
    for _ in range(repeats + 1):
        start = time.process_time() if threads == 1 else time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        times.append((time.process_time() if threads == 1 else time.perf_counter()) - start)
    return {"dims": len(patch), "patch": list(topo.patch_size), "batch": batch, "base": base,
            "macs": cost.macs * batch, "activations": cost.activations * batch,
            "large_activations": cost.activations_in_maps_over(batch, LARGE_MAP_BYTES), "seconds": min(times[1:])}


def _memory_worker() -> None:  # pragma: no cover - runs in a subprocess (measure_forward_backward_memory)
    import gc
    import resource
    import sys

    import torch
    from monai.networks.nets import DynUNet

    from .topology import get_topology, stage_filters

    torch.set_num_threads(1)
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    def reset_peak() -> bool:
        try:  # Linux >= 4.0: "5" resets the peak resident set size (VmHWM)
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return True
        except OSError:
            return False

    def peak_rss() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    results = []
    for spacing, patch, batch, base, cin in json.loads(sys.stdin.read()):
        topo = get_topology(spacing, patch)
        filters = stage_filters(topo.num_stages, base, FEATURE_CAP)
        net = DynUNet(len(patch), cin, 2, [list(k) for k in topo.kernel_sizes], [list(s) for s in topo.strides],
                      [list(s) for s in topo.strides[1:]], filters=filters, norm_name="instance")
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99)
        x = torch.randn(batch, cin, *topo.patch_size)
        y = torch.randint(0, 2, (batch, *topo.patch_size))
        before = 0
        for _ in range(2):  # after the first step gradients and momentum exist: they belong to the baseline
            gc.collect()
            reset_peak()
            before = rss()
            opt.zero_grad(set_to_none=False)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        results.append(peak_rss() - before)
        del net, opt, x, y
        gc.collect()
    print(json.dumps(results))


def measure_forward_backward_memory(configs) -> list[int]:
    """Peak extra resident memory (bytes) of one forward + backward + SGD step, per configuration.

    Runs in a fresh subprocess with glibc's mmap threshold lowered (``MALLOC_MMAP_THRESHOLD_``), so
    large freed blocks go back to the system and the resident set follows live memory. The result is
    the peak resident set during the second step (``VmHWM``, reset through ``/proc/self/clear_refs``
    just before it) minus the resident set at its start (model, gradients and momentum already
    allocated). Without ``clear_refs`` (non-Linux) the high-water mark is the process's, so ``configs``
    must then be ordered by increasing memory.

    Args:
        configs: ``[(spacing, patch, batch, base_features, in_channels), ...]``.
    """
    import subprocess
    import sys

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0", OMP_NUM_THREADS="1")
    code = "from medseg_bench.planning.calibration import _memory_worker; _memory_worker()"
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps([list(map(list, c[:2])) + list(c[2:]) for c in configs]),
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def calibrate(threads: int = 1, save: bool = True, grid=None, log=print) -> StepTimeModel:
    """Measure :data:`CALIBRATION_GRID` on this machine, fit, and cache the model (atomic write)."""
    rows = []
    for spacing, patch, batch, base in grid or CALIBRATION_GRID:
        row = measure_step_time(spacing, patch, batch, base, threads=threads)
        rows.append(row)
        if log:
            log(f"  {len(patch)}D patch {'x'.join(map(str, row['patch']))} batch {batch} base {base}: {row['seconds']:.3f} s")
    model = StepTimeModel(fit_step_time(rows), source=f"calibrated on this machine ({time.strftime('%Y-%m-%d')})", threads=threads)
    if save:
        path = cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"key": machine_key(threads), "model": model.to_dict(), "measurements": rows}, indent=2) + "\n")
        os.replace(tmp, path)
    return model
