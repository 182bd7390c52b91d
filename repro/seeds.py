"""Seeds: every stage gets one; the process receives it as REPRO_SEED (and PYTHONHASHSEED)."""

from __future__ import annotations

import os
import random
import sys


def seed_everything(seed: int | None = None) -> int:
    """Seed `random`, NumPy and PyTorch from `seed` (default `$REPRO_SEED`, else 0).

    NumPy and PyTorch are seeded only when already importable; neither is imported for nothing.
    """
    if seed is None:
        seed = int(os.environ.get("REPRO_SEED", "0"))
    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    for mod in ("numpy", "torch"):
        if mod in sys.modules or _importable(mod):
            if mod == "numpy":
                import numpy as np

                np.random.seed(seed % (2**32))
            else:
                import torch

                torch.manual_seed(seed)
    return seed


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def stage_env(seed: int) -> dict[str, str]:
    return {"REPRO_SEED": str(seed), "PYTHONHASHSEED": str(seed)}
