"""The closed vocabularies of a run: what happened to a stage, and why a stage is stale.

`str`-valued enums: a member *is* its string, so JSON (`run --json`, `status --json`, the
observers' events), msgpack records and comparisons with plain strings read from older
records all see exactly the values DESIGN.md documents. Code names a member instead of
spelling the string, so a typo is an AttributeError, not a silently wrong status.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What a run did with one stage (`run --json` "status", the run record, observers)."""

    RAN = "ran"
    RESTORED = "restored"  # outputs put back from the run cache without running
    UP_TO_DATE = "up-to-date"
    FAILED = "failed"
    SKIPPED = "skipped"  # an upstream stage did not complete


# A stage whose outcome lets downstream stages go on / that did not complete.
DONE = (Outcome.RAN, Outcome.RESTORED, Outcome.UP_TO_DATE)
NOT_DONE = (Outcome.FAILED, Outcome.SKIPPED)


class ReasonKind(StrEnum):
    """Why a stage or tracked path is stale (`status --json` reasons' "kind")."""

    CODE = "code"
    DATA = "data"
    PARAMS = "params"
    ENV = "env"
    IMAGE = "image"
    SEED = "seed"
    CMD = "cmd"
    OUTS = "outs"
    UPSTREAM = "upstream"
    NEW = "new"
    MISSING = "missing"  # content not in the local cache: pull
    EXTERNAL = "external"  # an imported source changed since `repro import-url` (status --external)
