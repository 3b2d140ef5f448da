"""Checkpoints: atomic writes, and every random state needed to resume a run exactly.

A checkpoint is one ``torch.save`` file holding the iteration, the method's state (networks,
optimiser, scheduler, extra), the data streams' states and the global RNG states (python, numpy,
torch, CUDA). It is written to a temporary file and renamed, so a run killed mid-write keeps the
previous checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

__all__ = ["capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed python, numpy (global) and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """``torch.save`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError / RuntimeError: missing or unreadable file (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint does not exist")
    try:
        # our own files: they hold numpy RNG states, so the full unpickler is needed
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
