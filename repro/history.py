"""`repro show`: everything about one snapshot or one run, and a stage's logs."""

from __future__ import annotations

from typing import Any

from repro.errors import NotFoundError
from repro.project import Project
from repro.records import RunRecord, list_records, load_record
from repro.snapshots import load_snapshot, resolve
from repro.store.layout import RECORDS, name_of


def _is_sig(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s.lower())


def find_run(project: Project, ref: str) -> RunRecord:
    backend = project.cache.backend
    ids = [name_of(k) for k in backend.list(RECORDS)]
    matches = [i for i in ids if i.startswith(ref)]
    if not matches:
        raise NotFoundError(f"'{ref}': no run or snapshot has this id in the cache.")
    if len(matches) > 1:
        raise NotFoundError(f"'{ref}': ambiguous; {len(matches)} runs start with it.")
    return load_record(backend, matches[0])


def show(project: Project, ref: str) -> dict[str, Any]:
    """A snapshot (by sig or 7+ character prefix) or a run record (by run id or prefix)."""
    backend = project.cache.backend
    if _is_sig(ref) and len(ref) >= 7:
        try:
            sig = resolve(backend, ref)
        except NotFoundError:
            sig = None
        if sig:
            snap = load_snapshot(backend, sig)
            runs = [r for r in list_records(backend) if r.snapshot == sig]
            return {
                "type": "snapshot",
                "snapshot": sig,
                **snap.record(),
                "runs": [
                    {
                        "run_id": r.run_id,
                        "started": r.started,
                        "user": r.user,
                        "host": r.host,
                        "git_commit": r.git_commit,
                        "git_dirty": r.git_dirty,
                        "kind": r.kind,
                    }
                    for r in runs
                ],
            }
    try:
        rec = find_run(project, ref)
    except NotFoundError:
        from repro.refs import git_lock, resolve_sig

        if not ref.strip() or git_lock(project, ref) is None:
            raise
        return show(project, resolve_sig(project, ref))  # a git revision's recorded state
    return {"type": "run", **rec.to_dict()}


def stage_logs(project: Project, ref: str, stage: str) -> tuple[str, str]:
    """The kept stdout and stderr of `stage` in a run (or the run that made a snapshot's
    result of that stage)."""
    backend = project.cache.backend
    records: list[RunRecord]
    if _is_sig(ref) and len(ref) >= 7:
        try:
            sig = resolve(backend, ref)
            snap = load_snapshot(backend, sig)
            want = (snap.stages.get(stage) or {}).get("signature")
            records = [
                r
                for r in list_records(backend)
                if any(
                    s.name == stage and s.signature == want and s.stdout is not None
                    for s in r.stages
                )
            ]
        except NotFoundError:
            records = [find_run(project, ref)]
    else:
        records = [find_run(project, ref)]
    for rec in records:
        for s in rec.stages:
            if s.name == stage and (s.stdout or s.stderr):
                out = project.cache.get_bytes(s.stdout).decode(errors="replace") if s.stdout else ""
                err = project.cache.get_bytes(s.stderr).decode(errors="replace") if s.stderr else ""
                return out, err
    raise NotFoundError(
        f"no kept logs of stage '{stage}' for '{ref}' (a stage that was restored "
        "or up to date did not run, so it has none)."
    )
