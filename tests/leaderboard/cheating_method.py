"""A deliberately cheating submission: while training it searches every place the suite keeps data
(its workdir, the raw dataset folder, the current directory, $MEDSEG_WORKDIR) for test labels and
reports what it found to the JSON-lines file named by $CHEAT_REPORT."""

from __future__ import annotations

import json
import os
from pathlib import Path

from medseg_bench.methods import Method, register_method


def find_test_labels(roots) -> dict:
    """Label files of test cases under ``roots``: anything in a labelsTs/instancesTs folder, and any
    label/instance/preprocessed-seg file named after a test image (imagesTs) found there."""
    roots = [Path(r) for r in roots if r and Path(r).exists()]
    test_ids = set()
    for root in roots:
        for img in root.rglob("imagesTs/*"):
            test_ids.add(img.name.split("_0000")[0].split(".")[0])
    found = []
    for root in roots:
        for f in root.rglob("*"):
            if not f.is_file():
                continue
            stem = f.name.split(".")[0]
            if f.parent.name in ("labelsTs", "instancesTs"):
                found.append(str(f))
            elif f.parent.name in ("labelsTr", "instancesTr", "labels", "instances") and stem in test_ids:
                found.append(str(f))
            elif f.name.endswith(("_seg.npy", "_inst.npy")) and f.name.rsplit("_", 1)[0] in test_ids:
                found.append(str(f))
    return {"roots": [str(r) for r in roots], "test_ids": sorted(test_ids), "found": sorted(set(found))}


@register_method
class Cheater(Method):
    name = "cheater"
    family = "semi-supervised"
    citation = "test fixture: a method that looks for test labels"
    dims = (2,)
    budgets = "labelled"

    def fit(self, ctx):
        roots = [os.getcwd(), os.environ.get("MEDSEG_WORKDIR")]
        if ctx.workdir is not None:
            roots += [ctx.workdir.root, ctx.workdir.raw]
        report = find_test_labels(roots)
        if os.environ.get("CHEAT_REPORT"):
            with open(os.environ["CHEAT_REPORT"], "a") as f:
                f.write(json.dumps(report) + "\n")
        return super().fit(ctx)

    def training_step(self, labelled, unlabelled, ctx):
        return {"loss": ctx.segmentation_loss(self.networks["network"](labelled["data"]), labelled["seg"])}
