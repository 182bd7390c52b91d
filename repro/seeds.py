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
        raw = os.environ.get("REPRO_SEED", "0")
        try:
            seed = int(raw)
        except ValueError:
            raise ValueError(f"REPRO_SEED={raw!r} is not an integer seed") from None
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


MAX_SEED = 2**32 - 1  # the largest PYTHONHASHSEED Python accepts


def stage_env(seed: int) -> dict[str, str]:
    """The seed's variables for a stage's process. A seed PYTHONHASHSEED refuses would make
    every Python stage die at start-up, so it is refused here (repro.yaml's checks keep such a
    seed out; this guards the Python API)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        from repro.errors import SpecError

        raise SpecError(f"seed {seed!r} is out of range: a seed is between 0 and {MAX_SEED}.")
    return {"REPRO_SEED": str(seed), "PYTHONHASHSEED": str(seed)}
