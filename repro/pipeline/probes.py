"""Environment probes, injected into the planner: what an image tag points at now, and what
an image holds. Planning (`repro status`, `repro diff`, the runner's decisions) asks only
through a `Probes` object its caller passes in; the commands build the real one from
`repro.execution.images` (which asks the Docker engine), and the default `CACHED` answers
from what is remembered in `.repro/tmp/envfp/` and otherwise "unknown", starting nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def is_pinned(ref: str) -> bool:
    """A reference that names its digest (`name@sha256:…`): it is its own digest."""
    return "@sha256:" in ref


def _unknown(_: str) -> None:
    return None


@dataclass(frozen=True)
class Probes:
    """`resolve_image(ref)`: the digest a tag stands for now, None when no one can tell.
    `probe_image(digest)`: the environment inside an image (`python`, `platform`,
    `packages`), None when unknown; results are cached by the caller of the probe."""

    resolve_image: Callable[[str], str | None] = _unknown
    probe_image: Callable[[str], dict[str, Any] | None] = _unknown


CACHED = Probes()
