"""The ``medseg-bench`` command: parses arguments and calls the package API. No logic lives here.

Each subcommand is bound to ``module:function`` and called with the parsed options as keyword
arguments (``workdir`` already resolved). A stage whose module is not in this version yet answers
"not yet available" with exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import traceback

from . import __version__

NOT_YET = 2
INPUT_ERROR = 2


def _add_workdir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default=None, help="where everything is written (default: $MEDSEG_WORKDIR or ./medseg_work)")


def _sub(subparsers, name: str, target: str, help: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=help, description=help)
    p.set_defaults(_target=target)
    _add_workdir(p)
    return p


def _add_no_verify(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--no-verify", action="store_true",
                   help="skip the raw-dataset check (the checks of `datasets check`, run first and cached per dataset "
                        "fingerprint in <workdir>/preprocessed/<dataset>/validation.json)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseg-bench",
        description="Self-configuring benchmark suite for unsupervised and semi-supervised medical image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"medseg_bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ds = sub.add_parser("datasets", help="list, generate, convert or check raw datasets", description="list, generate, convert or check raw datasets")
    _add_workdir(ds)
    ds_sub = ds.add_subparsers(dest="datasets_command", metavar="ACTION")
    _sub(ds_sub, "list", "medseg_bench.datasets.catalogue:list_command", "list built-in generators, converters and the datasets in the workdir")
    p = _sub(ds_sub, "generate", "medseg_bench.datasets.catalogue:generate_command", "generate a built-in simulated dataset")
    p.add_argument("name", help="generator name (see `datasets list`), or 'all'")
    p.add_argument("--out", default=None, help="output folder (default: <workdir>/raw/<name>_<size>)")
    p.add_argument("--size", default="small", choices=["tiny", "small", "full"],
                   help="tiny (about 6 cases, for tests), small (the CPU presets; default) or full (realistic; the paper preset)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0; the built-in datasets use 0)")
    p.add_argument("--preview", action="store_true", help="also write a PNG montage (image, label overlay)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p = _sub(ds_sub, "convert", "medseg_bench.datasets.catalogue:convert_command", "convert a downloaded public dataset to the raw format")
    p.add_argument("name", help="converter name (see `datasets list`)")
    p.add_argument("--src", required=True, help="folder of the downloaded data")
    p.add_argument("--out", default=None, help="output folder (default: <workdir>/raw/<name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing converted dataset")
    p.add_argument("--preview", action="store_true", help="also write a PNG montage")
    p.add_argument("--option", action="append", default=None, metavar="KEY=VALUE",
                   help="a converter option, repeatable (e.g. monuseg: use_binary_masks=false); `datasets list` shows them")
    p = _sub(ds_sub, "check", "medseg_bench.datasets.catalogue:check_command", "check a raw dataset and report every problem found")
    p.add_argument("path", help="raw dataset folder, or a dataset name under <workdir>/raw")

    p = _sub(sub, "plan", "medseg_bench.planning:plan_command", "fingerprint a dataset and write plans.json (no labels used)")
    _add_no_verify(p)
    p.add_argument("dataset", help="dataset name under <workdir>/raw or path to a raw folder")
    p.add_argument("--memory-gb", type=float, default=None, help="GPU memory target of the paper preset in GB (default 8, as nnU-Net; CPU presets are sized by step time)")
    p.add_argument("--force", action="store_true", help="overwrite plans.json even if it was edited by hand")
    p.add_argument("--calibrate", action="store_true", help="re-measure this machine's CPU step cost")

    p = _sub(sub, "preprocess", "medseg_bench.preprocessing:preprocess_command", "crop, normalise and resample into the preprocessed cache")
    _add_no_verify(p)
    p.add_argument("dataset", help="dataset name under <workdir>/raw or path to a raw folder")
    p.add_argument("-c", "--config", dest="configs", nargs="+", default=None, help="configurations (default: all planned)")
    p.add_argument("-j", "--num-workers", type=int, default=None, help="worker processes (default: cores)")

    p = _sub(sub, "train", "medseg_bench.training.cli:train_command", "train one method at one label budget and seed, then evaluate on the test set")
    _add_no_verify(p)
    p.add_argument("dataset", help="dataset name under <workdir>/raw")
    p.add_argument("--method", required=True, help="a registered method name (e.g. supervised, mean_teacher)")
    p.add_argument("--budget", required=True, help="number of labelled training cases, or 'all'")
    p.add_argument("--seed", type=int, default=0, help="seed of the labelled subset and of training (default 0)")
    p.add_argument("--preset", default=None, choices=["demo", "quick", "paper"], help="default: paper with a GPU, quick on CPU")
    p.add_argument("--config", default=None, choices=["2d", "3d_fullres"], help="default: the preset's recommended configuration")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--iterations", type=int, default=None, help="override the preset's number of iterations")
    p.add_argument("--rerun", action="store_true",
                   help="train again from scratch even if this cell finished (old run folder kept as .previous)")
    p.add_argument("--tta", action="store_true", help="mirroring test-time augmentation for the test-set evaluation")

    p = _sub(sub, "predict", "medseg_bench.training.cli:predict_command", "predict a folder of raw images with a trained run")
    p.add_argument("run_dir", help="a finished run folder (<workdir>/runs/...)")
    p.add_argument("images_dir", help="folder of raw images (<case>_0000<ext>, as imagesTs)")
    p.add_argument("out_dir", help="where the label maps are written")
    p.add_argument("--tta", action="store_true", help="mirroring test-time augmentation")

    p = _sub(sub, "evaluate", "medseg_bench.metrics.evaluate:main_evaluate", "score predictions against reference labels")
    p.add_argument("pred_dir", help="folder of predicted label maps")
    p.add_argument("ref_dir", help="folder of reference label maps (same file names)")
    p.add_argument("--dataset-json", dest="dataset_json", default=None,
                   help="the dataset's dataset.json (labels, instance flag; default: looked up beside ref_dir)")
    p.add_argument("--out", dest="out_dir", default=None, help="where metrics are written (default: pred_dir)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes (default 0 = this process, one numba thread per core; N > 1 = N processes x cores // N threads)")

    p = _sub(sub, "run", "medseg_bench.bench.cli:run_command", "run a benchmark grid (default: the built-in benchmark) and write its leaderboard")
    _add_no_verify(p)
    p.add_argument("--datasets", nargs="+", default=None,
                   help="dataset names under <workdir>/raw or built-in generator names (default: the four built-in "
                        "datasets, generated when absent)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="method names (default: every built-in method that applies to each dataset; plugins only when named)")
    p.add_argument("--budgets", nargs="+", default=None,
                   help="labelled training cases per cell, integers or 'all' (default: the preset's budgets)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the preset's seeds)")
    p.add_argument("--preset", default=None, choices=["demo", "quick", "paper"],
                   help="schedule size (default: demo on CPU, paper with a GPU; quick --seeds 0 1 2 is the CPU "
                        "reference benchmark)")
    p.add_argument("--executor", default="local", choices=["local", "ray", "slurm"],
                   help="where cells run: local process pool (default), a Ray cluster ($RAY_ADDRESS or a local "
                        "one), Slurm job arrays via submitit ($MEDSEG_SLURM_PARTITION, ...)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel cells for the local executor (default: one single-threaded worker per core; one per GPU)")
    p.add_argument("--rerun", action="store_true",
                   help="run finished cells again from scratch (default: finished cells are kept, whatever commit made "
                        "them); a shared stage is retrained only when every finished cell made from it is rerun")
    p.add_argument("--records", default=None, metavar="DIR",
                   help="count the cells that DIR holds done records for as finished, e.g. leaderboards/results "
                        "(the reference benchmark resumes on a new machine from its committed records)")
    p.add_argument("--dry-run", action="store_true",
                   help="prepare the datasets, list the cells still to run with their estimated cost, train nothing")

    p = _sub(sub, "leaderboard", "medseg_bench.leaderboard.cli:leaderboard_command", "build leaderboard tables, plots and HTML from result records")
    p.add_argument("--out", default=None, help="output folder (default: <workdir>/leaderboards)")
    p.add_argument("--add", default=None, metavar="BUNDLE", help="re-score a submission bundle and merge it")
    p.add_argument("--private-seed-file", default=None, metavar="FILE",
                   help="with --add: re-run the bundle's models on a private test split generated from the secret "
                        "seed in FILE (built-in datasets) and score that instead of the bundle's predictions")

    p = _sub(sub, "submit", "medseg_bench.leaderboard.cli:submit_command", "validate, train and predict a new method into a submission bundle")
    _add_no_verify(p)
    p.add_argument("method", metavar="PATH_OR_ENTRYPOINT",
                   help="a Python file defining one Method subclass, or the name of an installed entry point "
                        "(group medseg_bench.methods)")
    p.add_argument("--datasets", nargs="+", default=None, help="datasets to train and predict on (default: the built-in ones the method applies to)")
    p.add_argument("--budgets", nargs="+", default=None, help="label budgets (default: the default preset's: demo on CPU, paper with a GPU)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the default preset's)")
    p.add_argument("--preset", default=None, choices=["demo", "quick", "paper"], help="preset (default: demo on CPU, paper with a GPU)")
    p.add_argument("--iterations", type=int, default=None, help="override the preset's training iterations (smoke tests)")
    return parser


def _resolve(target: str):
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # only a missing stage module means "not yet"; a missing dependency is a real error
        if exc.name and module_name.startswith(exc.name) and exc.name.startswith("medseg_bench"):
            return None
        raise
    return getattr(module, func_name, None)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C while a command runs: the same clean stop (a grid cancels its workers,
    finished results are kept and a re-run resumes). Background jobs need this: a shell starts them with
    SIGINT ignored, so ``kill PID`` (SIGTERM; also what Slurm sends before a kill) is their Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_target", None):
        # a group without an action (e.g. `medseg-bench datasets`) prints its help
        if args.command == "datasets":
            parser.parse_args(["datasets", "--help"])
        parser.print_help()
        return 0 if args.command is None else 2
    func = _resolve(args._target)
    name = args.command + (f" {args.datasets_command}" if args.command == "datasets" else "")
    if func is None:
        print(f"medseg-bench {name}: not yet available in this version", file=sys.stderr)
        return NOT_YET
    from .errors import InputError
    from .workdir import resolve_workdir

    kwargs = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("command", "datasets_command")}
    if kwargs.pop("no_verify", False):
        os.environ["MEDSEG_NO_VERIFY"] = "1"  # inherited by worker processes (see io/verify.py)
    kwargs["workdir"] = resolve_workdir(kwargs.get("workdir"))
    try:
        with _sigterm_as_interrupt():
            return int(func(**kwargs) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except InputError as exc:
        print(f"medseg-bench {name}: {exc}", file=sys.stderr)
        return INPUT_ERROR
    except Exception:  # a bug, not bad input: show where it happened
        traceback.print_exc()
        print(f"medseg-bench {name}: internal error (a bug in medseg_bench {__version__}, not a problem with your "
              "input); please report it with the traceback above", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
