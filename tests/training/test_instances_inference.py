import numpy as np
import torch

from medseg_bench.training import semantic_to_instances, sliding_window_probabilities
from medseg_bench.training.inference import mirror_combinations


def test_touching_discs_are_split():
    yy, xx = np.mgrid[:40, :60]
    a = (yy - 20) ** 2 + (xx - 20) ** 2 < 100
    b = (yy - 20) ** 2 + (xx - 37) ** 2 < 100
    seg = (a | b).astype(np.uint8)
    seg[2, 55] = 1  # a 1-pixel speck: dropped by min_size
    inst = semantic_to_instances(seg, h=1.0, min_size=5)
    assert inst.max() == 2 and inst.dtype == np.int32
    assert inst[20, 15] != inst[20, 42] and inst[2, 55] == 0
    assert semantic_to_instances(np.zeros((5, 5), np.uint8)).max() == 0


def test_sliding_window_identity_predictor_shapes():
    def predictor(x):  # logits favouring class 1 where the input is positive
        return torch.cat([-x[:, :1], x[:, :1]], 1) * 10

    img = np.random.default_rng(0).normal(size=(1, 7, 37, 50)).astype(np.float32)
    p2 = sliding_window_probabilities(predictor, img, [16, 16], mirror_axes=[0, 1])  # 2D patches on a volume
    assert p2.shape == (2, 7, 37, 50)
    np.testing.assert_array_equal(p2.argmax(0), (img[0] > 0).astype(int))
    p3 = sliding_window_probabilities(predictor, img, [8, 16, 16])
    assert p3.shape == (2, 7, 37, 50)
    np.testing.assert_array_equal(p3.argmax(0), (img[0] > 0).astype(int))
    assert len(mirror_combinations([0, 1, 2])) == 8
