"""repro: a content-addressed reproducibility engine for data and ML pipelines.

The Python API mirrors the command line: `Project.find()` / `Project.init()`, then
`repro.data.add`, `repro.pipeline.runner.run`, `repro.pipeline.status.status`, and so on.
"""

from __future__ import annotations

__version__ = "0.1.0"


def seed_everything(seed: int | None = None) -> int:
    """Seed `random`, NumPy and PyTorch (when importable) from `seed` or `$REPRO_SEED`."""
    from repro.seeds import seed_everything as _seed

    return _seed(seed)


__all__ = ["__version__", "seed_everything"]
