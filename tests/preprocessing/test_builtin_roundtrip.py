"""Built-in datasets through plan + preprocess and back: the label of every case of ``ct_hip`` (small)
resampled to the planned spacing and exported to its original geometry keeps Dice >= 0.95 (30 cases,
all resampled: min 0.978 when measured); the other built-ins (tiny) round-trip with Dice >= 0.95 too."""

import pytest

from medseg_bench import datasets
from medseg_bench.io import RawDataset
from medseg_bench.planning import plan_dataset
from medseg_bench.preprocessing import export_to_original, preprocess_case, preprocess_label


def _generated(name, size, tmp_path):
    try:
        datasets.get_generator(name)
    except KeyError:
        pytest.skip(f"generator {name!r} is not registered in this version")
    return datasets.generate(name, tmp_path / f"{name}_{size}", size=size, seed=0)


def _min_dice(raw_dir, tmp_path):
    raw = RawDataset(raw_dir)
    plans = plan_dataset(raw_dir, tmp_path / "pp", num_workers=2)
    config = "3d_fullres" if "3d_fullres" in plans["configurations"] else "2d"
    worst, resampled = 1.0, 0
    for case in raw.train_cases() + raw.test_cases():
        image, geo = case.load_image()
        label, lgeo = case.load_label()
        _, props = preprocess_case(image, geo, plans, config)
        resampled += props["shape_after_resample"] != [props["shape_after_crop"][a] for a in props["transpose"]]
        back = export_to_original(preprocess_label(label, lgeo, plans, config, props), props, plans, config)
        assert back.shape == label.shape
        for v in plans["labels"].values():
            if v and (label == v).any():
                a, b = back == v, label == v
                worst = min(worst, 2 * (a & b).sum() / (a.sum() + b.sum()))
    return worst, resampled


@pytest.mark.slow
def test_ct_hip_small_round_trip_dice(tmp_path):
    worst, resampled = _min_dice(_generated("ct_hip", "small", tmp_path), tmp_path)
    assert worst >= 0.95, worst
    assert resampled > 0  # varying slice thickness: the planned spacing does resample cases


@pytest.mark.parametrize("name", ["spect_bone", "retina_ga", "nuclei_he"])
def test_builtin_tiny_round_trip_dice(name, tmp_path):
    # (ct_hip tiny is left out: at ~10 mm voxels its hip bones are a few hundred voxels, and a 10 %
    # in-plane resampling alone costs them Dice 0.86-0.96; the small-size test above is the criterion)
    worst, _ = _min_dice(_generated(name, "tiny", tmp_path), tmp_path)
    assert worst >= 0.95, worst
