"""Run logging: a JSON-lines log, a tqdm progress bar (loss, iterations/s) and optional TensorBoard."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

__all__ = ["RunLogger"]


class RunLogger:
    """Appends one JSON object per logged iteration to ``path``.

    On resume (``resume_from`` = the checkpoint's iteration) entries after that iteration, written by
    the killed run after its last checkpoint, are dropped so the log reads like an uninterrupted run.
    """

    def __init__(self, path: str | os.PathLike, total: int, start: int = 0, progress: bool = True,
                 tensorboard_dir: str | os.PathLike | None = None, desc: str = "train"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("iteration", 0) <= start:
                    kept.append(line)
            tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
            tmp.write_text("".join(k + "\n" for k in kept))
            os.replace(tmp, self.path)
        self._fh = open(self.path, "a")  # noqa: SIM115 - closed in close()
        self._bar = None
        if progress and total > start:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=start, desc=desc, unit="it", dynamic_ncols=True, file=sys.stderr)
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(tensorboard_dir))
            except Exception as exc:  # noqa: BLE001 - tensorboard is optional
                print(f"medseg_bench: TensorBoard logging disabled ({exc})", file=sys.stderr)
        self._t0 = time.perf_counter()
        self._last_it, self._last_t = start, self._t0

    def step(self, iteration: int, values: dict, write: bool) -> None:
        """Record iteration ``iteration`` (1-based count of finished iterations)."""
        if self._bar is not None:
            self._bar.update(1)
            if "loss" in values and math.isfinite(values["loss"]):
                self._bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
        if not write:
            return
        now = time.perf_counter()
        rate = (iteration - self._last_it) / max(now - self._last_t, 1e-9)
        self._last_it, self._last_t = iteration, now
        entry = {"iteration": iteration, **{k: round(float(v), 6) for k, v in values.items()},
                 "it_per_s": round(rate, 4), "time": round(time.time(), 3)}
        self._fh.write(json.dumps(entry) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"train/{k}", v, iteration)

    def event(self, **fields) -> None:
        self._fh.write(json.dumps({"event": True, **fields}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        self._fh.close()
