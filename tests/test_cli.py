import subprocess
import sys

import pytest

from medseg_bench import cli

SUBCOMMANDS = [
    ["datasets", "list"], ["datasets", "generate"], ["datasets", "convert"], ["datasets", "check"],
    ["plan"], ["preprocess"], ["train"], ["predict"], ["evaluate"], ["run"], ["leaderboard"], ["submit"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help_and_workdir(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*words, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--workdir" in out


def test_unavailable_stage_says_not_yet(monkeypatch, capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["plan", "x"])
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: (setattr(args, "_target", "medseg_bench.not_a_stage:fn"), args)[1])
    assert cli.main(["plan", "x"]) == cli.NOT_YET
    assert "not yet available" in capsys.readouterr().err


def test_missing_dependency_is_not_masked_as_not_yet(monkeypatch):
    def boom(name):
        raise ModuleNotFoundError("No module named 'somedep'", name="somedep")

    monkeypatch.setattr(cli.importlib, "import_module", boom)
    with pytest.raises(ModuleNotFoundError):
        cli._resolve("medseg_bench.planning:plan_command")


def test_console_script_and_datasets_list(tmp_path):
    out = subprocess.run([sys.executable, "-m", "medseg_bench", "datasets", "list", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert "Built-in generators" in out and str(tmp_path / "raw") in out


def test_workdir_resolution(monkeypatch, tmp_path):
    from medseg_bench.workdir import Workdir, resolve_workdir

    monkeypatch.setenv("MEDSEG_WORKDIR", str(tmp_path / "env"))
    assert resolve_workdir(None) == tmp_path / "env"
    assert resolve_workdir(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.delenv("MEDSEG_WORKDIR")
    monkeypatch.chdir(tmp_path)
    assert resolve_workdir(None) == tmp_path / "medseg_work"
    wd = Workdir(tmp_path)
    assert wd.run_dir("d", "quick", "2d", "m", "all", 1) == tmp_path / "runs/d/quick/2d/m/budget_all/seed_1"
    with pytest.raises(FileNotFoundError, match="neither a raw dataset folder nor a name"):
        wd.resolve_dataset("missing_ds")


def test_every_option_and_argument_has_help():
    import argparse

    from medseg_bench.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, path + [name])
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                yield " ".join(path), action

    missing = [f"{cmd}: {a.option_strings or a.dest}" for cmd, a in walk(build_parser(), ["medseg-bench"]) if not a.help]
    assert not missing, missing
