"""Time medseg_bench's surface and instance metrics against peers, side by side, in one run.

Inputs (seeded): a smooth random object (a sphere deformed by low-frequency noise) as reference,
and three predictions of it: (a) ``perturbed`` (boundary moved by higher-frequency noise),
(b) ``shifted`` (rolled by 3 % of the image size along every axis) and (c) ``scattered``
(the reference plus 0.1 % random false-positive voxels all over the image). Sizes: 2D 512² and
2048², 3D 128³ and 256³; 3D both isotropic and with spacing (2.5, 0.8, 0.8).

Timed: ours = ``surface_metrics`` (HD, both HD95s, ASSD and NSD from one distance computation) with
all numba threads and with one; MONAI ``compute_hausdorff_distance(percentile=95)``; medpy ``hd95``
(pooled definition); DeepMind ``surface-distance`` (``compute_surface_distances`` +
``compute_robust_hausdorff(95)``: a different, surfel-weighted definition, timed only). Every
function gets one warm-up call per input, then the median of repeated calls (at least one, at most
``--repeats``, fewer for slow calls: see ``--budget``). Values are checked: ours vs MONAI within
float32 precision (rel 1e-5), our pooled HD95 vs medpy to 1e-9.

Floor: a bare pass over both masks (``np.count_nonzero`` of each), the least any metric must read;
our time is printed as a multiple of it. Goals (issue 22): MONAI / ours >= 10x at 3D 256³ and >= 8x
at 2D 2048², wall time with all threads, printed per row.

Instances: ``instance_metrics`` (AJI, AJI+, PQ, ...) on a 1000x1000 map with ~500 instances.
Folder: ``--evaluate-cases N`` times ``evaluate_folder`` on N 256³ NIfTI cases with the automatic plan
(in process, a numba thread per core) and with 2 processes, and prints the plan each used.

Usage: ``python benchmarks/metrics_bench.py [--sizes 2d512,2d2048,3d128,3d256] [--peers monai,medpy,deepmind]``
(everything, the 10-case ``evaluate_folder`` timing included; ``--threads`` for both sides, default 2);
``--quick``: 3D 256³ and 2D 2048² against MONAI only, 3 repeats, no instances, no folder (a few minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from functools import partial

import numpy as np
from scipy import ndimage as ndi

SIZES = {"2d512": (512, 512), "2d2048": (2048, 2048), "3d128": (128,) * 3, "3d256": (256,) * 3}
GOALS = {"3d256": 10.0, "2d2048": 8.0}  # MONAI wall / ours wall (issue 22)
ANISO = (2.5, 0.8, 0.8)


# -- inputs --------------------------------------------------------------------------------------------
def _smooth_noise(shape, rng, cells):
    low = rng.standard_normal((cells,) * len(shape)).astype(np.float32)
    f = ndi.zoom(low, [s / cells for s in shape], order=1, grid_mode=True, mode="grid-wrap")
    return f / f.std()


def make_inputs(shape, seed=0):
    """Reference and the three predictions (bool arrays) for one image size."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, s, dtype=np.float32) for s in shape]
    r2 = sum(a**2 for a in np.meshgrid(*axes, indexing="ij", sparse=True))
    base = r2 + 0.12 * _smooth_noise(shape, rng, 6)
    ref = base < 0.45
    perturbed = (base + 0.03 * _smooth_noise(shape, rng, max(8, shape[0] // 16))) < 0.45
    shift = tuple(int(round(0.03 * s)) * (-1) ** i for i, s in enumerate(shape))
    shifted = np.roll(ref, shift, axis=tuple(range(len(shape))))
    scattered = ref | (rng.random(shape, dtype=np.float32) < 1e-3)
    return ref, {"perturbed": perturbed, "shifted": shifted, "scattered": scattered}


def make_instances(shape=(1000, 1000), n=500, seed=0):
    """A nuclei-like instance map (random ellipses, non-contiguous ids) and a noisy prediction of it."""
    rng = np.random.default_rng(seed)
    ref = np.zeros(shape, np.int32)
    ids = rng.choice(np.arange(1, 20 * n), n, replace=False)
    for k in range(n):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ry, rx = rng.uniform(6, 14, 2)
        y0, y1 = max(0, int(cy - ry)), min(shape[0], int(cy + ry) + 1)
        x0, x1 = max(0, int(cx - rx)), min(shape[1], int(cx + rx) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        ref[y0:y1, x0:x1][((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = ids[k]
    pred = np.roll(ref, (2, -1), axis=(0, 1))
    pred[ndi.binary_erosion(pred > 0, iterations=1) != (pred > 0)] = 0  # thinner predictions
    drop = rng.choice(np.unique(pred)[1:], n // 20, replace=False)  # some missed nuclei
    pred[np.isin(pred, drop)] = 0
    return pred, ref


# -- timing --------------------------------------------------------------------------------------------
def timed(fn, repeats, budget_s):
    """Warm-up call, then medians of up to ``repeats`` calls within about ``budget_s``.

    Returns ``(wall seconds, process CPU seconds, calls timed, value)``. CPU time is the sum over
    threads; on a machine shared with other jobs it is the steadier of the two.
    """
    t0 = time.perf_counter()
    value = fn()
    t_warm = time.perf_counter() - t0
    n = max(1, min(repeats, int(budget_s / max(t_warm, 1e-6))))
    walls, cpus = [], []
    for _ in range(n):
        c0, t0 = time.process_time(), time.perf_counter()
        value = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), n, value


def _bare_pass(pred, ref):
    """The floor: one read of both masks (nothing can compute a surface metric with less)."""
    return np.count_nonzero(pred), np.count_nonzero(ref)


def peer_functions(names):
    """``{name: (callable(pred, ref, spacing, tensors) -> hd95, note)}`` for the peers that import."""
    peers = {}
    if "monai" in names:
        try:
            import torch
            from monai.metrics import compute_hausdorff_distance

            def monai_hd95(pred, ref, spacing, tensors):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    v = compute_hausdorff_distance(
                        tensors[0], tensors[1], include_background=True, percentile=95, spacing=spacing
                    )
                return float(v)

            peers["monai"] = (
                monai_hd95,
                f"torch threads={torch.get_num_threads()}; KD-tree query single-threaded",
            )
        except ImportError as exc:
            print(f"skipping MONAI: {exc}")
    if "medpy" in names:
        try:
            from medpy.metric.binary import hd95 as medpy_hd95

            peers["medpy"] = (
                lambda p, r, s, t: float(medpy_hd95(p, r, voxelspacing=s)),
                "single-threaded scipy EDT",
            )
        except ImportError as exc:
            print(f"skipping medpy: {exc} (pip install medpy)")
    if "deepmind" in names:
        try:
            import surface_distance as sd

            def dm_hd95(pred, ref, spacing, tensors):
                sp = spacing if spacing is not None else (1.0,) * pred.ndim
                return float(sd.compute_robust_hausdorff(sd.compute_surface_distances(ref, pred, sp), 95))

            peers["deepmind"] = (
                dm_hd95,
                "single-threaded; surfel-weighted definition (values differ by design)",
            )
        except ImportError as exc:
            print(f"skipping DeepMind surface-distance: {exc} (pip install surface-distance)")
    return peers


def time_evaluate_folder(n_cases: int, shape=(256, 256, 256)) -> None:
    """``evaluate_folder`` on ``n_cases`` NIfTI cases (perturbed predictions, spacing 2.5, 0.8, 0.8),
    with the automatic plan (num_workers=0: in process, a numba thread per core) and in 2 processes; wall seconds."""
    import tempfile
    from pathlib import Path

    from medseg_bench.io import Geometry, write_image
    from medseg_bench.metrics import evaluate_folder

    with tempfile.TemporaryDirectory() as tmp:
        pdir, rdir = Path(tmp) / "pred", Path(tmp) / "ref"
        for i in range(n_cases):
            ref, preds = make_inputs(shape, seed=i)
            write_image(pdir / f"c{i:03d}.nii.gz", preds["perturbed"].astype(np.uint8), Geometry(spacing=ANISO))
            write_image(rdir / f"c{i:03d}.nii.gz", ref.astype(np.uint8), Geometry(spacing=ANISO))
        print()
        for workers in (0, 2):
            t0, c0 = time.perf_counter(), time.process_time()
            s = evaluate_folder(pdir, rdir, {"background": 0, "fg": 1}, ".nii.gz", num_workers=workers)
            par = s["parallelism"]
            print(f"evaluate_folder, {n_cases} cases {'x'.join(map(str, shape))} (.nii.gz), num_workers={workers}: "
                  f"{time.perf_counter() - t0:.2f} s wall ({time.process_time() - c0:.2f} s CPU of this process) "
                  f"with {par['processes']} process(es) x {par['numba_threads_per_process']} numba thread(s) "
                  f"on {par['cores']} core(s); mean HD95 {s['mean']['fg']['hd95']:.4f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2d512,2d2048,3d128,3d256")
    ap.add_argument("--peers", default="monai,medpy,deepmind")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=6.0, help="seconds of timed calls per function and input")
    ap.add_argument(
        "--slow-peers-max-voxels", type=int, default=1 << 25, help="skip medpy/DeepMind above this"
    )
    ap.add_argument("--no-instances", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="3d256,2d2048 vs MONAI only, 3 repeats, 3 s budget, no instances")
    ap.add_argument("--evaluate-cases", type=int, default=None,
                    help="time evaluate_folder on N 256³ cases (default 10; 0 with --quick; 0 = skip)")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads for ours (numba) and MONAI (torch), capped at the cores (default 2)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.peers, args.repeats, args.budget, args.no_instances = "3d256,2d2048", "monai", 3, 3.0, True
    if args.evaluate_cases is None:
        args.evaluate_cases = 0 if args.quick else 10

    import numba

    from medseg_bench.metrics import instance_metrics, surface_metrics

    n_threads = max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n_threads)
    try:
        import torch

        torch.set_num_threads(n_threads)
    except ImportError:
        torch = None
    peers = peer_functions(args.peers.split(","))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
        f"load average at start {load:.1f}, "
        f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}"
    )
    print(
        f"ours: numba threads={n_threads} (threading layer: {numba.config.THREADING_LAYER}), "
        f"far queries: block-pruned row search, then a KD-tree (workers={n_threads}); 'ours 1t' = numba.set_num_threads(1)"
    )
    for name, (_, note) in peers.items():
        print(f"{name}: {note}")
    print("times: median ms per call after a warm-up call (wall clock; 'cpu' = process CPU time)")
    print(f"ratios: peer wall / ours wall with {n_threads} threads, and peer cpu / ours cpu single-threaded")
    print()
    header = ["input", "kind", "floor", f"ours {n_threads}t", "ours/floor", "ours 1t", "ours 1t cpu"]
    for p in peers:
        header += [p, f"{p} cpu"]
    for p in peers:
        header += [f"{p}/ours", f"{p}/ours cpu"]
    header += ["HD95 ours", "check", "goal"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    ok_all = True
    goal_rows = []
    small = np.zeros((16, 16, 16), bool)
    small[4:9, 4:9, 4:9] = True
    surface_metrics(small, small)  # load the compiled kernels
    surface_metrics(small[0], small[0])

    for size in args.sizes.split(","):
        shape = SIZES[size]
        ref, preds = make_inputs(shape)
        spacings = [None] if len(shape) == 2 else [None, ANISO]
        for spacing in spacings:
            label = f"{size.replace('d', 'D ', 1)}" + (f" sp{spacing}" if spacing else "")
            for kind, pred in preds.items():
                row = [label, kind]
                ours = partial(surface_metrics, pred, ref, spacing)
                t_floor, _, _, _ = timed(partial(_bare_pass, pred, ref), args.repeats, 1.0)
                t_ours, _, _, m = timed(ours, args.repeats, args.budget)
                numba.set_num_threads(1)
                t_1, c_1, _, _ = timed(ours, args.repeats, args.budget)
                numba.set_num_threads(n_threads)
                row += [f"{1e3 * t_floor:.2f}", f"{1e3 * t_ours:.1f}", f"{t_ours / t_floor:.0f}×",
                        f"{1e3 * t_1:.1f}", f"{1e3 * c_1:.1f}"]
                goal = ""
                tensors = None
                if torch is not None:
                    tensors = (
                        torch.from_numpy(pred[None, None].astype(np.float32)),
                        torch.from_numpy(ref[None, None].astype(np.float32)),
                    )
                ratios, checks = [], []
                for name, (fn, _) in peers.items():
                    if name in ("medpy", "deepmind") and pred.size > args.slow_peers_max_voxels:
                        row += ["skipped", ""]
                        ratios += ["–", "–"]
                        continue
                    t_p, c_p, n_p, v = timed(
                        partial(fn, pred, ref, spacing, tensors), args.repeats, args.budget
                    )
                    mark = "" if n_p > 1 else "¹"
                    row += [f"{1e3 * t_p:.0f}{mark}", f"{1e3 * c_p:.0f}{mark}"]
                    ratios += [f"{t_p / t_ours:.1f}×", f"{c_p / c_1:.1f}×"]
                    if name == "monai":
                        if size in GOALS:
                            met = t_p / t_ours >= GOALS[size]
                            goal = f"{'met' if met else 'MISSED'} (≥{GOALS[size]:g}×)"
                            goal_rows.append((f"{label} {kind}", t_p / t_ours, GOALS[size], met))
                        good = abs(v - m.hd95) <= 1e-5 * abs(m.hd95)
                        checks.append("MONAI ok" if good else f"MONAI {v:.6g}≠")
                        ok_all &= good
                    elif name == "medpy":
                        good = abs(v - m.hd95_pooled) <= 1e-9 * abs(m.hd95_pooled)
                        checks.append("medpy ok" if good else f"medpy {v:.6g}≠")
                        ok_all &= good
                row += ratios + [f"{m.hd95:.4f}", ", ".join(checks), goal]
                print("| " + " | ".join(row) + " |", flush=True)
    print("¹ a single timed call (the warm-up alone used most of the time budget)")
    print(f"load average at end {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "")
    if goal_rows:
        print()
        print(f"goals (issue 22: MONAI wall / ours wall, {n_threads} threads each): "
              f"{sum(m for *_, m in goal_rows)} of {len(goal_rows)} met")
        for name, ratio, target, met in goal_rows:
            print(f"  {name}: {ratio:.1f}× (goal ≥ {target:g}×) {'met' if met else 'MISSED'}")

    if not args.no_instances:
        pred, ref = make_instances()
        instance_metrics(pred[:50, :50], ref[:50, :50])
        t, c, n, v = timed(lambda: instance_metrics(pred, ref), args.repeats, args.budget)
        print()
        print(
            f"instances: 1000x1000, {v['n_ref']} reference / {v['n_pred']} predicted instances: "
            f"instance_metrics (AJI, AJI+, PQ, DQ, SQ, P/R/F1) {1e3 * t:.1f} ms wall, {1e3 * c:.1f} ms cpu "
            f"(single-threaded kernels); AJI {v['aji']:.4f} AJI+ {v['aji_plus']:.4f} PQ {v['pq']:.4f} "
            "(target < 100 ms)"
        )
    if args.evaluate_cases:
        time_evaluate_folder(args.evaluate_cases)
    print()
    print("all value checks passed" if ok_all else "VALUE MISMATCH (see check column)")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
