"""The submission guard's rules (no process started: ``check`` is the hook's decision) and the
child's environment. The end-to-end attacks are in test_submit.py."""

import os

from medseg_bench.leaderboard.sandbox import OpenGuard, clean_environment, label_case


def test_label_case_names_raw_and_preprocessed_labels():
    assert label_case("/x/raw/ds/labelsTs/case_7.nii.gz") == "case_7"
    assert label_case("/x/raw/ds/instancesTr/c1.png") == "c1"
    assert label_case("/x/preprocessed/ds/2d/c1_seg.npy") == "c1"
    assert label_case("/x/raw/ds/imagesTr/c1_0000.png") is None and label_case("/x/preprocessed/ds/2d/c1.npy") is None


def test_guard_rules(tmp_path, monkeypatch):
    stage = tmp_path / "stage"
    guard = OpenGuard([str(stage)], free_roots=[str(stage / "contract_check")])  # installed, never armed here
    guard.allowed_cases = {"a"}
    pre = stage / "preprocessed" / "ds" / "2d"
    assert guard.check(str(pre / "a_seg.npy")) is None and guard.check(str(pre / "b.npy")) is None
    assert "label file of case 'b'" in guard.check(str(pre / "b_seg.npy"))
    assert "label file of case 't1'" in guard.check(str(tmp_path / "home" / "raw" / "ds" / "labelsTs" / "t1.png"))
    assert "outside the submission's staged workdir" in guard.check(str(tmp_path / "home" / "notes.txt"))
    assert guard.check(str(stage / "contract_check" / "pre" / "case_005_seg.npy")) is None
    assert "another process's /proc entry" in guard.check(f"/proc/{os.getppid()}/cmdline")
    assert guard.check(f"/proc/{os.getpid()}/status") is None and guard.check("/proc/cpuinfo") is None
    assert guard.check("/usr/lib/os-release") is None
    guard.allowed_cases = set()  # a label-free method, or budget 0: no label at all
    assert "label file of case 'a'" in guard.check(str(pre / "a_seg.npy"))


def test_clean_environment_points_nowhere_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_WORKDIR", "/home/user/medseg_work")
    monkeypatch.setenv("PWD", "/home/user/medseg_work")
    monkeypatch.setenv("OLDPWD", "/home/user")
    env = clean_environment(tmp_path)
    assert not [k for k in env if k.startswith("MEDSEG_")] and "OLDPWD" not in env
    assert env["PWD"] == str(tmp_path) and env["HOME"].startswith(str(tmp_path))
    assert env["TMPDIR"].startswith(str(tmp_path))


def test_private_secret_is_long_and_hidden(tmp_path):
    import pytest

    from medseg_bench.leaderboard.private import read_secret_seed, seed_tag
    from medseg_bench.leaderboard.submit import BundleError

    (tmp_path / "short").write_text("4242\n")
    with pytest.raises(BundleError, match="at least 16 characters"):
        read_secret_seed(tmp_path / "short")
    with pytest.raises(BundleError, match="not found"):
        read_secret_seed(tmp_path / "missing")
    (tmp_path / "good").write_text("0123456789abcdef0123\n")
    seed = read_secret_seed(tmp_path / "good")
    assert 0 <= seed < 2**60 and seed == read_secret_seed(tmp_path / "good")
    assert str(seed) not in seed_tag(seed) and len(seed_tag(seed)) == 12


def test_mixed_test_splits_are_named():
    from medseg_bench.leaderboard.cli import mixed_test_splits

    pub = {"cell": {"dataset": "a"}}
    priv = {"cell": {"dataset": "a"}, "submission": {"test_split": {"kind": "private"}}}
    assert mixed_test_splits([pub, priv, {"cell": {"dataset": "b"}}]) == {"a"}
    assert mixed_test_splits([priv, priv]) == set()
