"""A deliberately hostile submission (test fixture), every attack of issue 25 in one file.

* top-level code reports which process imports it (it must never be the ``submit`` process);
* during the contract check (``ctx.dataset == "synthetic"``) it behaves; during real training it
  - searches every place the suite keeps data (cwd, ``$PWD``, ``$MEDSEG_WORKDIR``, its workdir) for test
    labels (a listing only, no file opened),
  - reads the parent process's command line for ``--workdir`` (``/proc/<ppid>/cmdline``),
  - asks a shell to do it instead (``subprocess``),
  - opens the real workdir's ``labelsTs`` and preprocessed test labels (``<test>_seg.npy``), at a path
    ``REAL_WORKDIR`` that the test writes into this file (the strongest attacker: knows where they are),
  - links a prediction-like file to the real test label (for ``submit`` to copy into the bundle),
  - opens the preprocessed label of a training case outside its budget,
  swallowing every error, and then trains honestly. Everything it sees goes to stdout as
  ``CHEAT {json}`` lines.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

from medseg_bench.methods import Method, register_method

REAL_WORKDIR = None  # the test replaces this line with the real workdir's path

print("CHEAT " + json.dumps({"event": "import", "pid": os.getpid(), "cwd": os.getcwd(),
                             "PWD": os.environ.get("PWD"),
                             "medseg_env": sorted(k for k in os.environ if k.startswith("MEDSEG_"))}), flush=True)


def find_test_labels(roots) -> dict:
    """Label files of test cases under ``roots`` (by listing only): anything in a labelsTs/instancesTs
    folder, and any label or preprocessed-seg file named after a test image (imagesTs) found there."""
    roots = [Path(r) for r in roots if r and Path(r).exists()]
    test_ids = {img.name.split("_0000")[0].split(".")[0] for root in roots for img in root.rglob("imagesTs/*")}
    found = []
    for root in roots:
        for f in root.rglob("*"):
            stem = f.name.split(".")[0]
            if not f.is_file():
                continue
            if f.parent.name in ("labelsTs", "instancesTs"):
                found.append(str(f))
            elif f.parent.name in ("labelsTr", "instancesTr") and stem in test_ids:
                found.append(str(f))
            elif f.name.endswith(("_seg.npy", "_inst.npy")) and f.name.rsplit("_", 1)[0] in test_ids:
                found.append(str(f))
    return {"roots": [str(r) for r in roots], "test_ids": sorted(test_ids), "found": sorted(set(found))}


def _attempt(what, fn):
    try:
        return {"what": what, "ok": True, "got": str(fn())[:200]}
    except Exception as exc:  # a cheater swallows the refusal
        return {"what": what, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


@register_method
class Cheater(Method):
    name = "cheater"
    family = "semi-supervised"
    citation = "test fixture: a method that looks for test labels"
    dims = (2,)
    budgets = "labelled"

    def fit(self, ctx):
        if ctx.dataset != "synthetic":  # the contract check's data is called "synthetic": behave there
            self._cheat(ctx)
        return super().fit(ctx)

    def _cheat(self, ctx):
        roots = [os.getcwd(), os.environ.get("PWD"), os.environ.get("MEDSEG_WORKDIR"), ctx.workdir.root]
        out = [{"what": "search", **find_test_labels(roots)}]
        out.append(_attempt("parent cmdline", lambda: Path(f"/proc/{os.getppid()}/cmdline").read_bytes()))
        out.append(_attempt("shell", lambda: subprocess.run(["cat", f"/proc/{os.getppid()}/cmdline"],
                                                            capture_output=True).stdout))
        real = Path(REAL_WORKDIR) if REAL_WORKDIR else None
        if real is not None:
            test_label = sorted((real / "raw" / ctx.dataset / "labelsTs").iterdir())[0]
            out.append(_attempt("labelsTs", lambda: test_label.read_bytes()[:8]))
            seg = sorted((real / "preprocessed" / ctx.dataset).rglob(f"{test_label.name.split('.')[0]}_seg.npy"))[0]
            out.append(_attempt("preprocessed test seg", lambda: np.load(seg).sum()))
            out.append(_attempt("symlink", lambda: os.symlink(test_label, Path(ctx.run_dir) / "planted.png")))
        beyond = [c for c in ctx.unlabelled_ids if (Path(ctx.folder.folder) / f"{c}_seg.npy").is_file()][0]
        out.append(_attempt("training label beyond the budget",
                            lambda: np.load(Path(ctx.folder.folder) / f"{beyond}_seg.npy").sum()))
        for item in out:
            print("CHEAT " + json.dumps(item), flush=True)

    def training_step(self, labelled, unlabelled, ctx):
        return {"loss": ctx.segmentation_loss(self.networks["network"](labelled["data"]), labelled["seg"])}
