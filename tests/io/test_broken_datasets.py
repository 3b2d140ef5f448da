"""Issue 21: every broken-dataset case is refused by `datasets check`, `train` and `run` alike, with one
line naming the file and the problem and a non-zero exit, before any work (no preprocessing, no
training); `--no-verify` skips the check explicitly. Cases come from tests/broken_datasets.py."""

import shutil
import time

import pytest
from broken_datasets import BREAKERS, NIFTI_ONLY

from medseg_bench.cli import main
from medseg_bench.io.verify import VALIDATION_FILE

CASES = [(kind, name) for kind in ("nifti", "png") for name in BREAKERS if not (kind == "png" and name in NIFTI_ONLY)]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    from medseg_testdata import make_tiny_3d, make_tiny_rgb_instances

    root = tmp_path_factory.mktemp("src")
    return {"nifti": make_tiny_3d(root / "nifti"), "png": make_tiny_rgb_instances(root / "png")}


def _broken(sources, tmp_path, kind, name):
    ds = tmp_path / "raw" / f"{kind}_{name}"
    shutil.copytree(sources[kind], ds)
    fname, part = BREAKERS[name](ds)
    return ds, fname, part


def _problem_lines(text):
    return [line.strip() for line in text.splitlines() if line.startswith("  /")]


@pytest.mark.parametrize("kind,name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_check_train_and_run_refuse_with_the_same_message(sources, tmp_path, capsys, kind, name):
    ds, fname, part = _broken(sources, tmp_path, kind, name)
    wd = str(tmp_path)
    assert main(["datasets", "check", str(ds)]) != 0
    out = capsys.readouterr()
    check_lines = _problem_lines(out.out + out.err)
    assert any(fname in line and part in line for line in check_lines), check_lines
    commands = {
        "train": ["train", ds.name, "--method", "supervised", "--budget", "2", "--iterations", "2", "--workdir", wd],
        "run": ["run", "--datasets", ds.name, "--methods", "supervised", "--budgets", "2", "--seeds", "0",
                "--preset", "demo", "--workers", "0", "--workdir", wd],
    }
    for cmd, argv in commands.items():
        t0 = time.monotonic()
        assert main(argv) == 2, cmd
        err = capsys.readouterr().err
        assert time.monotonic() - t0 < 30
        assert "Traceback" not in err, err
        assert f"medseg-bench {cmd}: {ds}: " in err, err
        lines = _problem_lines(err)
        assert lines == check_lines, (cmd, lines, check_lines)  # the same checks and messages, one line each
        assert all("\n" not in line for line in lines)
    pre = tmp_path / "preprocessed" / ds.name
    assert not list(pre.glob("*/*.npy")) and not (pre / VALIDATION_FILE).exists()  # refused before any work
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("DONE"))


def test_a_valid_dataset_is_checked_once_and_no_verify_skips(sources, tmp_path, monkeypatch, capsys):
    from medseg_bench.io import verify

    ds = tmp_path / "raw" / "ok"
    shutil.copytree(sources["nifti"], ds)
    cache = tmp_path / "preprocessed" / "ok"
    assert verify.verify_dataset(ds, cache) is True          # checked now
    assert verify.verify_dataset(ds, cache) is False         # cached pass
    (ds / "labelsTr" / "case_000.nii.gz").write_bytes(b"")   # any change is checked again
    with pytest.raises(verify.InvalidDatasetError, match="case_000.nii.gz: empty file"):
        verify.verify_dataset(ds, cache)
    monkeypatch.setenv(verify.NO_VERIFY_ENV, "1")
    assert verify.verify_dataset(ds, cache) is False
