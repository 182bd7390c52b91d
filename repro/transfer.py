"""Push and pull between the local cache and a remote: only what the other side lacks.

Presence is learned in bulk (one listing of each side), never one request per object. Objects
move in parallel threads; each lands atomically (temporary name then rename, or a single put), so
an interrupted transfer is simply run again and finishes the work. Every object fetched from a
remote is verified against its hash before it enters the local cache: a corrupted or truncated
one is reported with its key and never used.
"""

from __future__ import annotations

import os

from repro.errors import CorruptObjectError, ReproError, UntrustedInputError
from repro.fetch import Progress, RemoteIndex, TransferReport, fetch_objects
from repro.lockfile import load_lock
from repro.project import Project
from repro.remote import open_remote, remote_errors, retry
from repro.safety import safe_key
from repro.store.layout import META, RECORDS
from repro.store.objects import ObjectStore


def target_paths(project: Project, targets: list[str]) -> dict[str, dict]:
    """The recorded paths (path -> lock entry) that `targets` need, for `repro pull TARGET`:
    a stage's cached outputs and the recorded paths it reads (tracked data, upstream
    outputs); a path's own entry, the recorded folder holding it, or the recorded paths inside
    it. A target that names nothing recorded is one sentence."""
    from repro.errors import NotFoundError
    from repro.pipeline.status import overlaps, recorded_paths

    lock = load_lock(project.lock_path)
    recorded = recorded_paths(lock)
    out: dict[str, dict] = {}
    for t in targets:
        entry = lock.stages.get(t)
        if entry is not None:
            outs = entry.get("outs") or {}
            out.update({p: d for p, d in outs.items() if d.get("cache", True)})
            for dep in entry.get("deps") or {}:
                out.update({p: d for p, d in recorded.items() if overlaps(p, dep)})
            continue
        rel = project.rel(t, "pull target") if os.path.isabs(t) else t.strip("/")
        hits = {p: d for p, d in recorded.items() if overlaps(p, rel)}
        if not hits:
            raise NotFoundError(
                f"{t}: no stage or recorded path of that name in repro.lock "
                "(give a stage name, a tracked data path or an output)."
            )
        out.update(hits)
    return out


def lock_roots(project: Project, targets: list[str] | None = None) -> list[tuple[str, bool]]:
    """(hash, is_dir) of what `repro.lock` references: outputs and data, or those of `targets`
    (stage names or paths)."""
    lock = load_lock(project.lock_path)
    roots = []
    for rel, d in lock.data.items():
        if not targets or rel in targets:
            roots.append((d["hash"], bool(d.get("isdir"))))
    for name, entry in lock.stages.items():
        for rel, d in (entry.get("outs") or {}).items():
            if d.get("cache", True) and (not targets or name in targets or rel in targets):
                roots.append((d["hash"], bool(d.get("isdir"))))
    return roots


def _keys(store: ObjectStore, folder: str) -> set[str]:
    return set(store.backend.list(folder))


def _valid_keys(keys: set[str], folder: str, report: TransferReport) -> set[str]:
    """The keys of a remote's listing that have the layout's shape. Any other key (`..` in it,
    a name that is no hash or run id) is refused: never joined to a local path, never read;
    each is reported once as a warning, and the rest of the transfer goes on."""
    good = set()
    for key in keys:
        try:
            good.add(safe_key(key, folder, f"remote '{report.remote}'"))
        except UntrustedInputError as exc:
            report.refused.append(exc.message)
    return good


def push(
    project: Project,
    remote: str | None = None,
    targets: list[str] | None = None,
    jobs: int = 8,
    progress: Progress | None = None,
    verify_remote: bool = False,
) -> TransferReport:
    """Upload what the remote lacks, never an object that fails verification (those are
    reported and the push fails after sending the rest). With `verify_remote`, read back the
    remote's copies of everything we hold and replace corrupt or missing ones."""
    name, rstore = open_remote(project, remote)
    local = project.cache
    report = TransferReport(name)
    with remote_errors(name, rstore.backend.url):
        if targets:
            want = {h for h in local.closure(lock_roots(project, targets)) if local.has(h)}
        else:
            want = local.all_hashes()  # present ones only: no per-object check needed
        index = RemoteIndex(project, rstore.backend.url)
        known = index.keys()
        if want - known:  # something may be missing there: ask the remote (a few requests)
            _push_objects(project, rstore, sorted(want - known), index, jobs, progress, report)
        report.present = len(want) - report.objects - len(report.corrupt) - len(report.failed)
        if report.failed:
            raise ReproError(
                f"push to remote '{name}': {len(report.failed)} objects failed "
                "to upload; run 'repro push' again to finish."
            )
        for folder in META:  # after the objects: a run entry never points at absent outputs
            mine = _keys(local, folder)
            if mine - known:
                theirs = retry(lambda folder=folder: _keys(rstore, folder))
                report.requests += 1
                index.add(theirs)
            else:
                theirs = mine
            for key in sorted(mine - theirs):
                data = local.backend.read_bytes(key)
                if folder != RECORDS and not _meta_ok(key, data):
                    report.corrupt.append(key)  # a damaged snapshot or entry stays here
                    continue
                retry(lambda key=key, data=data: rstore.backend.write_bytes(key, data))
                index.add([key])
                report.meta += 1
                report.requests += 1
        _push_tags(project, rstore, name, report)
        if verify_remote:
            from repro.maintenance import verify_remote as check_remote

            held = local.verified_set(want)
            report.repaired, left = check_remote(project, rstore, held, jobs)
            report.corrupt += [f"{k} (on the remote; no good copy here)" for k in left]
    if report.corrupt:
        raise CorruptObjectError(
            f"push to remote '{name}': {len(report.corrupt)} item(s) failed verification and "
            f"were not uploaded ({', '.join(report.corrupt[:3])}"
            + (", …" if len(report.corrupt) > 3 else "")
            + "); the rest was pushed. 'repro fsck --repair' fetches good copies; 'repro add' "
            "or 'repro run --force' of the good bytes also heals them."
        )
    return report


def _push_objects(
    project: Project,
    rstore: ObjectStore,
    todo: list[str],
    index: RemoteIndex,
    jobs: int,
    progress: Progress | None,
    report: TransferReport,
) -> None:
    """Upload those of `todo` the remote lacks: small ones in packs, large ones loose or as
    chunks (`repro.store.sync`), never an object that fails verification here."""
    from repro.fetch import remote_inventory
    from repro.store.sync import Meter, push_objects

    local = project.cache
    meter = Meter()
    try:
        inv = remote_inventory(rstore, report, meter)
        lacking = [h for h in todo if not inv.has(h)]
        index.add(h for h in todo if inv.has(h))
        if progress is not None:
            from repro.progress import start_phase

            total = sum(local.object_size(h) or 0 for h in lacking)
            start_phase(progress, "upload", len(lacking), total)
        res = push_objects(
            rstore, lacking, inv, meter, local=local, jobs=jobs, retry=retry, progress=progress
        )
    finally:
        report.absorb(meter)
    index.add(res.sent)
    report.objects += len(res.sent)
    report.bytes += res.bytes
    report.corrupt += res.corrupt
    report.failed += res.failed


def _meta_ok(key: str, data: bytes) -> bool:
    from repro.maintenance import meta_ok

    return meta_ok(key, data)


def _push_tags(project: Project, rstore: ObjectStore, name: str, report: TransferReport) -> None:
    """Tags travel after the snapshots they name; one the remote holds for another sig is
    left there, with a warning."""
    from repro.tags import push_tags

    sent, warnings = retry(lambda: push_tags(project.cache.backend, rstore.backend, name))
    report.meta += sent
    report.refused += warnings


def _pull_tags(project: Project, rstore: ObjectStore, name: str, report: TransferReport) -> None:
    """The remote's tags, checked as untrusted input; a local tag is never moved by a pull."""
    from repro.snapshots import snapshot_key
    from repro.tags import pull_tags

    local = project.cache.backend
    got, warnings = retry(
        lambda: pull_tags(local, rstore.backend, name, lambda s: local.exists(snapshot_key(s)))
    )
    report.meta += got
    report.refused += warnings


def pull(
    project: Project,
    remote: str | None = None,
    targets: list[str] | None = None,
    jobs: int = 8,
    progress: Progress | None = None,
    wait: float = 0.0,
) -> TransferReport:
    """Fetch the metadata the local cache lacks and the objects `repro.lock` needs, then put
    the lock's outputs and data into the workspace; under the project lock (waiting up to
    `wait` seconds for it): a gc never removes what a pull is fetching."""
    from repro.pipeline.runlock import run_lock

    with run_lock(project.dot, wait):
        return _pull(project, remote, targets, jobs, progress)


def _pull(
    project: Project,
    remote: str | None,
    targets: list[str] | None,
    jobs: int,
    progress: Progress | None,
) -> TransferReport:
    chosen = target_paths(project, targets) if targets else None  # a bad target changes nothing
    name, rstore = open_remote(project, remote)
    report = TransferReport(name)
    local = project.cache
    with remote_errors(name, rstore.backend.url):
        for folder in META:
            theirs = _valid_keys(retry(lambda folder=folder: _keys(rstore, folder)), folder, report)
            mine = _keys(local, folder)
            for key in sorted(theirs - mine):
                try:
                    data = retry(lambda key=key: rstore.backend.read_bytes(key))
                except UntrustedInputError as exc:  # e.g. a symlinked key on a shared folder
                    report.refused.append(exc.message)
                    continue
                if folder != RECORDS and not _meta_ok(key, data):
                    report.refused.append(
                        f"remote '{name}': {key} does not match its name or names unsafe "
                        "paths; skipped"
                    )
                    continue
                local.backend.write_bytes(key, data)
                report.meta += 1
        _pull_tags(project, rstore, name, report)
        if chosen is not None:
            roots = [(d["hash"], bool(d.get("isdir"))) for d in chosen.values()]
        else:
            roots = lock_roots(project)
        # Trees first (they name the files), then everything they reach.
        sizes = _file_sizes(project, chosen) if progress is not None else None
        fetch_objects(project, name, {h for h, _ in roots}, jobs, progress, report, sizes)
    if chosen is None:
        from repro.data import checkout_lock

        checkout_lock(project, progress=progress)
        return report
    _checkout_paths(project, chosen, name)
    return report


def _file_sizes(project: Project, chosen: dict[str, dict] | None) -> dict[str, int]:
    """Hash -> size of the files (not folders) a pull wants, as the lock records them: with
    the sizes the trees give, the download's totals are known before its first byte."""
    if chosen is None:
        lock = load_lock(project.lock_path)
        entries = list(lock.data.values())
        for entry in lock.stages.values():
            entries += [d for d in (entry.get("outs") or {}).values() if d.get("cache", True)]
    else:
        entries = list(chosen.values())
    return {d["hash"]: int(d.get("size") or 0) for d in entries if not d.get("isdir")}


def _checkout_paths(project: Project, chosen: dict[str, dict], remote: str) -> None:
    """Put the pulled targets (and only them) in the workspace; one sentence naming the
    path when the remote lacked some of their content."""
    from repro.data import ensure_local
    from repro.gitignore import ensure_ignored
    from repro.workspace import CheckoutReport, PathHash, check_out

    ensure_local(project, chosen, remote)
    report = CheckoutReport()
    for rel, d in sorted(chosen.items()):
        check_out(project, rel, PathHash.from_dict(d), report=report)
    ensure_ignored(project.root, sorted(chosen))
