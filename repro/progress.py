"""Telling an optional progress display how a long operation goes (issue 13).

The lowest layer, so hashing, the cache, fetching, checkout and the run can all speak to a
display the command line made (`repro.cli_render.PhaseProgress`) without importing it. A
display is any object: `phase(name, files, bytes)` starts a phase with its totals, and
`advance(files, bytes)` counts what is done; a plain callback (the hashing engine's
`progress(nbytes)`) has neither, and these helpers then say nothing. `None` means no display.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

# Makes a display for one operation, labelled (e.g. "caching train"), as a context manager
# whose `callback` is the display or None (`repro.cli_render.progress_for`).
ProgressFactory = Callable[[str], AbstractContextManager[Any]]


def start_phase(progress: Any, name: str, files: int | None, nbytes: int | None) -> None:
    """Tell a progress display that phase `name` (hash, store, upload...) starts, with its
    totals. A plain callback (bytes only) has no phases: nothing is said."""
    phase = getattr(progress, "phase", None)
    if phase is not None:
        phase(name, files, nbytes)


def advance(progress: Any, files: int, nbytes: int) -> None:
    """Files and bytes done, for a progress display that counts both (`advance`)."""
    step = getattr(progress, "advance", None)
    if step is not None:
        step(files, nbytes)
