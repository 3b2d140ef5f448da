"""Contract tests parametrised over the method registry: every method added later gets them."""

import pytest
import torch

from medseg_bench.methods import (
    Method,
    get_method,
    list_methods,
    load_method_from_file,
    register_method,
    unregister_method,
)
from medseg_bench.training.contract import ContractError, check_method_contract

torch.set_num_threads(1)  # see tests/training/conftest.py


@pytest.mark.parametrize("name", list_methods())
def test_contract_2d(name, tmp_path):
    cls = get_method(name)
    if 2 not in cls.dims:
        pytest.skip(f"{name} is 3D only")
    check_method_contract(cls, tmp_path, dims=2)


@pytest.mark.parametrize("name", list_methods())
def test_contract_3d(name, tmp_path):
    cls = get_method(name)
    if 3 not in cls.dims:
        pytest.skip(f"{name} is 2D only")
    check_method_contract(cls, tmp_path, dims=3)


@pytest.mark.parametrize("name", list_methods())
def test_declared_attributes(name):
    cls = get_method(name)
    assert cls.name == name and cls.citation and cls.family
    info = cls.info()
    assert set(info) >= {"family", "citation", "needs_labels", "oracle", "class_rule"}
    if cls.family in ("unsupervised", "classical") and not cls.needs_labels:
        assert cls.budgets == "zero_only"


def test_contract_catches_a_label_peeking_method(tmp_path):
    import numpy as np

    class Peeker(get_method("supervised")):
        name = "_peeker"

        def setup(self, ctx):
            super().setup(ctx)
            for cid in ctx.unlabelled_ids:  # reads labels of the unlabelled pool: forbidden
                np.load(ctx.folder.folder / f"{cid}_seg.npy")

    with pytest.raises(ContractError, match="outside the budget"):
        check_method_contract(Peeker, tmp_path)


def test_registry_validation_and_single_file(tmp_path):
    class Bad(Method):
        name = "_bad"
        family = "magic"
        citation = "x"

    with pytest.raises(ValueError, match="family"):
        register_method(Bad)
    with pytest.raises(KeyError, match="unknown method"):
        get_method("_no_such_method")
    src = tmp_path / "my_method.py"
    src.write_text(
        "from medseg_bench.methods import register_method\n"
        "from medseg_bench.methods.supervised import Supervised\n"
        "@register_method\n"
        "class Mine(Supervised):\n"
        "    name = '_mine_from_file'\n"
        "    hparams = {**Supervised.hparams, 'lr': 0.02}\n"
    )
    try:
        cls = load_method_from_file(src)
        assert cls.name == "_mine_from_file" and get_method("_mine_from_file") is cls
    finally:
        unregister_method("_mine_from_file")
