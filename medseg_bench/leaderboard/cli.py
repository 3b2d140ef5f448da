"""``medseg-bench leaderboard`` and ``medseg-bench submit`` handlers (printing lives here; logic in the
modules they call)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..bench.results import RecordError, load_records, results_dir
from ..workdir import Workdir
from .build import build_leaderboard, copy_records

__all__ = ["leaderboard_command", "submit_command"]


def leaderboard_command(workdir: Path, out: str | None = None, add: str | None = None,
                        private_seed_file: str | None = None) -> int:
    """Build the leaderboard from ``<workdir>/results`` into ``out`` (default ``<workdir>/leaderboards``).

    With ``--add BUNDLE`` the bundle is merged first (:mod:`.merge`: seal, dataset/split hashes and budget
    checked, predictions re-scored against the workdir's reference labels); with ``--private-seed-file``
    its models are re-run on a private test split instead (:mod:`.private`).
    """
    wd = Workdir(Path(workdir))
    if private_seed_file is not None and add is None:
        print("error: --private-seed-file needs --add BUNDLE", file=sys.stderr)
        return 2
    if add is not None:
        from .merge import merge_bundle
        from .private import read_secret_seed
        from .submit import BundleError

        try:
            seed = read_secret_seed(Path(private_seed_file)) if private_seed_file else None
            added = merge_bundle(Path(add), wd.root, private_seed=seed)
        except (BundleError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for rec in added:
            c = rec["cell"]
            where = ("a re-run of its model on the private test split" if seed is not None
                     else "the bundle's predictions")
            print(f"merged {c['method']} on {c['dataset']} (budget {c['budget']}, seed {c['seed']}): metrics "
                  f"recomputed from {where}")
    errors: list[str] = []
    records = load_records(results_dir(wd.root), errors=errors)
    for e in errors:
        print(f"warning: skipped malformed record: {e}", file=sys.stderr)
    for ds in sorted(mixed_test_splits(records)):
        print(f"warning: {ds}: some rows are scored on a private test split, others on the public one; "
              "they are not comparable (re-run every row with --private-seed-file)", file=sys.stderr)
    if not records:
        print(f"error: no result records in {results_dir(wd.root)} (run `medseg-bench run` first)", file=sys.stderr)
        return 2
    target = Path(out) if out else wd.leaderboards
    try:
        written = build_leaderboard(records, target, manifest_dir=results_dir(wd.root))
        if out and target.resolve() != wd.leaderboards.resolve():
            # an explicit --out (the committed leaderboards/) carries its records, to be rebuilt from them
            copied = copy_records(records, results_dir(wd.root), target / "results")
            print(f"copied {len(copied)} records to {target / 'results'}")
    except (RecordError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"leaderboard from {len(records)} records -> {target} ({len(written)} files; open {target / 'index.html'})")
    return 0


def mixed_test_splits(records: list[dict]) -> set[str]:
    """Datasets whose records were scored on different test splits (public and private)."""
    kinds: dict[str, set] = {}
    for r in records:
        split = ((r.get("submission") or {}).get("test_split") or {}).get("kind", "public")
        kinds.setdefault(r["cell"]["dataset"], set()).add(split)
    return {ds for ds, k in kinds.items() if len(k) > 1}


def submit_command(method: str, workdir: Path, datasets: list[str] | None = None, budgets: list[str] | None = None,
                   seeds: list[int] | None = None, preset: str | None = None, iterations: int | None = None) -> int:
    """Validate a method (file or entry point), train it on staged copies without test labels, predict
    the test images and write a submission bundle."""
    from .submit import BundleError, SubmissionError, submit

    try:
        bundle = submit(method, Path(workdir), datasets=datasets, budgets=budgets, seeds=seeds, preset=preset,
                        iterations=iterations)
    except (SubmissionError, BundleError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(f"bundle: {bundle}\nmerge it with: medseg-bench leaderboard --workdir {workdir} --add {bundle}")
    return 0
