"""Hand-built preprocessed fixtures (the contract's file layout) for engine tests."""

import json

import numpy as np
import pytest
import torch

from medseg_bench.training import RunContext, resolve_settings

# one intra-op thread: on a shared 2-core machine, torch's spinning worker threads slow tiny
# networks down by orders of magnitude when other processes compete for the cores
torch.set_num_threads(1)


def make_blob_folder(folder, n_cases=6, shape=(40, 40), seed=0, volume=False):
    """Images with one bright disc (or ball) on noise; label = the disc. Returns case ids."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    full = ((12,) + tuple(shape)) if volume else tuple(shape)
    for i in range(n_cases):
        grids = np.meshgrid(*[np.arange(s) for s in full], indexing="ij")
        centre = [rng.uniform(s * 0.3, s * 0.7) for s in full]
        r = rng.uniform(5, 9)
        d2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
        seg = (d2 < r * r).astype(np.int16)
        img = (seg * 2.0 + rng.normal(0, 0.6, size=full)).astype(np.float32)[None]
        cid = f"case_{i:03d}"
        np.save(folder / f"{cid}.npy", img)
        np.save(folder / f"{cid}_seg.npy", seg)
        (folder / f"{cid}.json").write_text(json.dumps({"case_id": cid, "subset": "train", "has_label": True}))
        ids.append(cid)
    return ids


def tiny_settings(patch=(32, 32), iterations=6, **extra):
    dims = len(patch)
    preset_cfg = {
        "patch_size": list(patch),
        "batch_size": 2,
        "num_iterations": iterations,
        "network": {"spatial_dims": dims, "in_channels": 1, "out_channels": 2, "kernel_size": [[3] * dims] * 3,
                    "strides": [[1] * dims, [2] * dims, [2] * dims], "filters": [4, 8, 16]},
        "augmentation": {"mirror_axes": list(range(dims)),
                         "spatial": {"p_rotation": 0.3, "rotation": {"x": [-0.4, 0.4]}, "p_scale": 0.3, "scale": [0.9, 1.1]},
                         "gamma": [{"p": 0.3, "range": [0.8, 1.2]}]},
    }
    return resolve_settings(preset_cfg, None, {"checkpoint_every": 3, "log_every": 1, **extra})


@pytest.fixture
def blob_ctx(tmp_path):
    from medseg_bench.data import PreprocessedFolder

    folder = tmp_path / "pre" / "2d"
    ids = make_blob_folder(folder)

    def make(run_name="run", **extra):
        settings = tiny_settings(**extra)
        plans = {"labels": {"background": 0, "blob": 1}, "dims": 2, "instance_labels": False}
        return RunContext(settings=settings, plans=plans, configuration="2d", preset="quick",
                          device=torch.device("cpu"), dataset="blobs", budget=4, seed=0,
                          run_dir=tmp_path / run_name, folder=PreprocessedFolder(folder),
                          labelled_ids=ids[:4], unlabelled_ids=ids[4:], progress=False)

    return make
