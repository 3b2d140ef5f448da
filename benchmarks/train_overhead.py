"""Per-iteration overhead of the medseg_bench training engine over a minimal hand-written MONAI loop.

Both loops use the same network (MONAI DynUNet from a plan-style block), the same batch and patch,
the same data pipeline (medseg_bench.data.BatchStream: foreground oversampling + batchgenerators
augmentation) and the same loss (MONAI DiceCELoss) and optimiser (SGD + poly). The engine adds what
a benchmark run needs: the Method hooks, gradient clipping, logging (JSON lines + progress bar),
checkpoints (every ``--checkpoint-every`` iterations and at the end) and RNG bookkeeping.

The two are timed alternately (engine, hand, engine, hand, ...) in one process, on the same
synthetic data, after a warm-up, and the ratio of median seconds/iteration is printed. Goal: <= 1.15.

    python benchmarks/train_overhead.py                    # 2D 128x128, batch 8, 16 base features
    python benchmarks/train_overhead.py --dims 3 --patch 48 64 64 --batch 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _network(dims: int, filters: int, stages: int) -> dict:
    return {"spatial_dims": dims, "in_channels": 1, "out_channels": 2, "kernel_size": [[3] * dims] * stages,
            "strides": [[1] * dims] + [[2] * dims] * (stages - 1),
            "filters": [min(filters * 2**i, 320) for i in range(stages)]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, default=2, choices=[2, 3])
    ap.add_argument("--patch", type=int, nargs="+", default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=20, help="iterations per timed block")
    ap.add_argument("--rounds", type=int, default=3, help="alternating blocks per loop")
    ap.add_argument("--checkpoint-every", type=int, default=100, help="engine checkpoint interval (its default)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = ap.parse_args(argv)

    from monai.losses import DiceCELoss

    from medseg_bench.data import BatchStream, PreprocessedFolder, load_training_cases
    from medseg_bench.methods import get_method
    from medseg_bench.networks import build_network
    from medseg_bench.training import RunContext, make_optimizer, resolve_settings, set_threads
    from medseg_bench.training.checkpoint import seed_everything
    from medseg_bench.training.contract import synthetic_preprocessed

    threads = set_threads(args.threads)
    patch = args.patch or ([128, 128] if args.dims == 2 else [48, 64, 64])
    batch = args.batch or (8 if args.dims == 2 else 2)
    stages = 5 if args.dims == 2 else 4
    net_cfg = _network(args.dims, args.filters, stages)
    from medseg_bench.planning.presets import augmentation_params

    aug = augmentation_params(patch, [1.0] * args.dims)  # the plan's nnU-Net pipeline
    tmp = Path(tempfile.mkdtemp(prefix="medseg_overhead_"))
    shape = (192, 192) if args.dims == 2 else (80, 80)
    ids = synthetic_preprocessed(tmp / "pre", n_cases=8, shape=shape, volume=args.dims == 3)
    if args.dims == 3:  # synthetic volumes are 12 slices deep: make them deep enough for the patch
        import numpy as np

        for cid in ids:
            img, seg = np.load(tmp / "pre" / f"{cid}.npy"), np.load(tmp / "pre" / f"{cid}_seg.npy")
            reps = -(-patch[0] // img.shape[1]) + 1
            np.save(tmp / "pre" / f"{cid}.npy", np.concatenate([img] * reps, axis=1))
            np.save(tmp / "pre" / f"{cid}_seg.npy", np.concatenate([seg] * reps, axis=0))
    folder = PreprocessedFolder(tmp / "pre")
    preset_cfg = {"patch_size": patch, "batch_size": batch, "num_iterations": args.iterations, "network": net_cfg,
                  "augmentation": aug}
    method_cls = get_method("supervised")
    settings = resolve_settings(preset_cfg, method_cls.hparams, {"checkpoint_every": args.checkpoint_every})

    def engine_block(i: int) -> float:
        ctx = RunContext(settings=settings, plans={"labels": {"background": 0, "fg": 1}}, configuration=f"{args.dims}d",
                         preset="quick", device=torch.device("cpu"), dataset="bench", budget=4, seed=i,
                         run_dir=tmp / f"engine_{i}", folder=folder, labelled_ids=ids, progress=True)
        seed_everything(i)
        m = method_cls()
        m.setup(ctx)
        t = time.perf_counter()
        ctx.run_loop(m)
        return (time.perf_counter() - t) / args.iterations

    def hand_block(i: int) -> float:
        seed_everything(i)
        lab, _ = load_training_cases(folder, ids)
        stream = BatchStream(lab, patch, batch, aug, 0.33, seed=i)
        net = build_network(net_cfg)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
        opt, sched = make_optimizer(net.parameters(), settings, args.iterations)
        net.train()
        t = time.perf_counter()
        for _ in range(args.iterations):
            b = next(stream)
            x, y = torch.from_numpy(b["data"]), torch.from_numpy(b["seg"]).long()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            sched.step()
        return (time.perf_counter() - t) / args.iterations

    print(f"dims {args.dims}, patch {patch}, batch {batch}, base features {args.filters}, threads {threads}, "
          f"{args.iterations} iterations x {args.rounds} rounds each")
    engine_block(999)  # warm-up (imports, allocator)
    hand_block(999)
    e, h = [], []
    for r in range(args.rounds):
        e.append(engine_block(r))
        h.append(hand_block(r))
        print(f"round {r}: engine {e[-1]:.4f} s/it, hand-written {h[-1]:.4f} s/it")
    me, mh = statistics.median(e), statistics.median(h)
    ratio = me / mh
    print(f"median engine {me:.4f} s/it, hand-written {mh:.4f} s/it, ratio {ratio:.3f} "
          f"({'OK' if ratio <= 1.15 else 'ABOVE'} the 1.15 goal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
