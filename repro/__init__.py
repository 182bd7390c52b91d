"""repro: a content-addressed reproducibility engine for data and ML pipelines.

The Python API mirrors the command line in `repro.api` (`init`, `add`, `run`, `status`, `diff`,
`log`, `show`, `checkout`, `push`, `pull`, `params`); see docs/api.md. It is reached as
`repro.api` after a plain `import repro` too, and imported only then: `import repro` stays as
cheap as it was. Its names are not re-exported here, because `repro.diff` is a module.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def seed_everything(seed: int | None = None) -> int:
    """Seed `random`, NumPy and PyTorch (when importable) from `seed` or `$REPRO_SEED`."""
    from repro.seeds import seed_everything as _seed

    return _seed(seed)


def __getattr__(name: str) -> Any:
    """`repro.api` on first use, without importing it for every `import repro`."""
    if name == "api":
        import importlib

        return importlib.import_module("repro.api")
    raise AttributeError(f"module 'repro' has no attribute {name!r}")


__all__ = ["__version__", "api", "seed_everything"]
