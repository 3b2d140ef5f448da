"""CUTS positive-pair sampler: our vectorised choice vs the paper code's loop structure, side by side.

CUTS (Liu, Amodio et al., arXiv 2209.11359) picks, for every anchor pixel, the first nearby candidate
whose patch is SSIM-similar to the anchor's. The official sampler does this with Python loops over
images, anchors and tries (one scikit-image SSIM call per try) — its known bottleneck.
:func:`medseg_bench.methods.cuts.sampler.choose_positives` does all tries of a batch in one tensor
pass; :func:`~medseg_bench.methods.cuts.sampler.choose_positives_loop` is the loop version (same
inputs, same outputs: ``tests/methods/test_cuts.py`` checks they are equal). Both are timed here on
the same anchors and candidates, and the script checks that the chosen positives agree.

Example::

    python benchmarks/cuts_sampler_bench.py --batch 4 --anchors 8 --tries 20 --size 128 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from medseg_bench.methods.cuts.sampler import (
    choose_positives,
    choose_positives_loop,
    draw_anchors,
    draw_candidates,
)


def _images(batch: int, size: int, seed: int) -> torch.Tensor:
    """Blobs on a noisy background in [-1, 1], ``(batch, 1, size, size)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((batch, 1, size, size), np.float32)
    for b in range(batch):
        img = np.zeros((size, size), np.float32)
        for _ in range(6):
            cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(size / 20, size / 6)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1.0
        out[b, 0] = np.clip(img * 1.4 - 0.7 + rng.normal(0, 0.25, img.shape), -1, 1)
    return torch.from_numpy(out)


def _best_of(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--anchors", type=int, default=8, help="anchors per image (CUTS default 8)")
    p.add_argument("--tries", type=int, default=20, help="candidate positives per anchor")
    p.add_argument("--radius", type=int, default=5, help="neighbourhood radius of candidates (pixels)")
    p.add_argument("--patch", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.5, help="SSIM threshold")
    p.add_argument("--size", type=int, default=128, help="image side (pixels)")
    p.add_argument("--repeats", type=int, default=3, help="best of N timings")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the loop is single-threaded)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    images = _images(a.batch, a.size, 0)
    anchors = draw_anchors(a.batch, a.size, a.size, a.anchors, a.patch)
    candidates = draw_candidates(anchors, a.size, a.size, a.radius, a.tries, a.patch)
    choose_positives(images, anchors, candidates, a.threshold, a.patch)  # warm-up
    t_vec, fast = _best_of(lambda: choose_positives(images, anchors, candidates, a.threshold, a.patch), a.repeats)
    np_args = (images.numpy(), anchors.numpy(), candidates.numpy(), a.threshold, a.patch)
    t_loop, slow = _best_of(lambda: choose_positives_loop(*np_args), a.repeats)
    same = bool(np.array_equal(fast.positives.numpy(), slow.positives) and
                np.array_equal(fast.found.numpy(), slow.found))
    print(f"batch {a.batch} x {a.anchors} anchors x {a.tries} tries, {a.size}^2, patch {a.patch}, "
          f"{a.threads} torch thread(s); found a positive for {int(fast.found.sum())}/{fast.found.numel()} anchors")
    print(f"{'sampler':<28}{'time (ms)':>12}")
    print(f"{'ours (vectorised)':<28}{t_vec * 1e3:>12.2f}")
    print(f"{'loop (paper-code structure)':<28}{t_loop * 1e3:>12.2f}")
    print(f"ratio loop / ours: {t_loop / t_vec:.1f}x; same positives: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
