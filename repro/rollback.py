"""`repro rollback`: go back to an earlier named version, and leave a trace of having done so.

A rollback is a checkout (`repro checkout SIG`, with its safety: content about to be
overwritten that is not in the cache is saved there first, unless `force`) that writes
`repro.lock` to the target state, followed by a run record of kind `rollback` naming the
snapshot it went to (`snapshot`) and the one it left (`rollback_from`), with the argv and CI
variables that triggered it: `repro log` and the audit trail show every rollback.

The default target is "the previous tagged version": the newest tag older than the current
state's newest tag that names another state; when the current state is not tagged, the newest
tag. The current state is the snapshot holding what `repro.lock` records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from repro.errors import NotFoundError
from repro.project import Project
from repro.tags import Tag, list_tags


@dataclass
class RollbackResult:
    run_id: str
    to_sig: str
    from_sig: str | None
    tags: list[str]  # the tags naming the target
    placed: int = 0
    removed: int = 0
    unchanged: int = 0
    saved: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "from": self.from_sig,
            "to": self.to_sig,
            "tags": self.tags,
            "placed": self.placed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "saved": [{"path": p, "hash": h} for p, h in self.saved],
            "notes": self.notes,
        }


def current_sig(project: Project) -> str | None:
    """The stored snapshot holding the state `repro.lock` records, or None."""
    from repro.lockfile import load_lock
    from repro.refs import matching_snapshot

    return matching_snapshot(project, load_lock(project.lock_path))


def previous_tagged(tags: list[Tag], current: str | None) -> Tag | None:
    """The tag to go back to by default, from `tags` (newest first)."""
    mine = [t for t in tags if t.sig == current]
    if mine:
        newest = mine[0].time
        older = [t for t in tags if t.time < newest and t.sig != current]
        return older[0] if older else None
    return tags[0] if tags else None


def target_of(project: Project, ref: str | None, current: str | None) -> str:
    """The full sig to roll back to: `ref` resolved like any state name, or the default."""
    if ref is not None:
        from repro.refs import resolve_sig

        return resolve_sig(project, ref)
    tags = list_tags(project.cache.backend)
    tag = previous_tagged(tags, current)
    if tag is None:
        here = [t.name for t in tags if t.sig == current]
        why = (
            f"no tag older than '{here[0]}' names another state"
            if here
            else "no tag names a version yet"
        )
        raise NotFoundError(
            f"nothing to roll back to: {why}; tag one with 'repro tag NAME SIG' or give "
            "'repro rollback SIG'."
        )
    return tag.sig


def rollback(
    project: Project, ref: str | None = None, force: bool = False, wait: float = 0.0
) -> RollbackResult:
    """Check out the state `ref` names (default: the previous tagged version), write
    repro.lock to it, and record the rollback as a run of kind `rollback`."""
    from repro.records import make_record, new_run_id, save_record
    from repro.snapshots import checkout_snapshot

    started = time.time()
    current = current_sig(project)
    target = target_of(project, ref, current)
    report = checkout_snapshot(project, target, force=force, wait=wait)
    run_id = new_run_id(started)
    record = make_record(project, run_id, "rollback", started, time.time(), target, "ok", [])
    record.rollback_from = current
    save_record(project.cache.backend, record)
    names = [t.name for t in list_tags(project.cache.backend) if t.sig == target]
    return RollbackResult(
        run_id,
        target,
        current,
        names,
        report.placed,
        report.removed,
        report.unchanged,
        list(report.saved),
        list(report.notes),
    )
