"""Names for states: a snapshot sig (or a unique prefix of 7+), a git revision, `repro.lock`.

DESIGN.md: "anywhere a sig is accepted, a unique prefix (7+), a tag name, or a git revision
(its `repro.lock`'s state) is accepted too". A git revision is read with `git show
REV:repro.lock` (validated like any lock from git) and mapped to the stored snapshot that holds
the same state: first among the snapshots the run records made at that commit, then among all.
A tag name (repro/tags.py) is looked up first and wins over a git revision of the same name.
Where no stored snapshot matches, `diff` can still compare against the lock's own record
(stages and data); `checkout` needs a stored snapshot and says so.
"""

from __future__ import annotations

import subprocess

from repro.errors import NotFoundError, ReproError, SpecError
from repro.lockfile import Lock, load_lock, parse_lock
from repro.project import LOCK_FILE, Project
from repro.readfile import MAX_BYTES, decode_text
from repro.snapshots import Snapshot, list_snapshots, load_snapshot, resolve

LOCK_REF = "repro.lock"


def _git(project: Project, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=project.root, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None


def git_lock(project: Project, rev: str) -> tuple[str, Lock] | None:
    """(commit, the lock at `rev`) or None when `rev` names no git commit here."""
    if rev.startswith("-"):
        return None  # never an option to git
    # Resolved first and peeled after: `:/message` (and any revision ending in a path-like
    # search) would take a `^{commit}` suffix as part of the text it searches for.
    found = _git(project, "rev-parse", "--verify", "--quiet", "--end-of-options", rev)
    if found is None or found.returncode != 0 or not found.stdout.strip():
        return None
    found = _git(project, "rev-parse", "--verify", "--quiet", f"{found.stdout.strip()}^{{commit}}")
    if found is None or found.returncode != 0:
        return None
    commit = found.stdout.strip()
    prefix = _git(project, "rev-parse", "--show-prefix")
    where = (prefix.stdout.strip() if prefix and prefix.returncode == 0 else "") + LOCK_FILE
    label = f"{LOCK_FILE} at {rev}"
    # Untrusted like any lock from git: its size is checked before it is read (a 1 GB blob is
    # one sentence, not 1 GB of memory) and its bytes are decoded strictly.
    kind = _git(project, "cat-file", "-t", f"{commit}:{where}")
    if kind is None or kind.returncode != 0 or kind.stdout.strip() != "blob":
        raise NotFoundError(f"'{rev}': git commit {commit[:10]} has no {LOCK_FILE}.")
    size = _git(project, "cat-file", "-s", f"{commit}:{where}")
    limit = MAX_BYTES["json"]
    if size is None or size.returncode != 0 or not size.stdout.strip().isdigit():
        raise NotFoundError(f"'{rev}': git commit {commit[:10]} has no {LOCK_FILE}.")
    if int(size.stdout) > limit:
        raise SpecError(
            f"{label}: is over {limit:,} bytes; repro reads files of this kind up to that."
        )
    try:
        shown = subprocess.run(
            ["git", "cat-file", "blob", f"{commit}:{where}"],
            cwd=project.root,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        shown = None
    if shown is None or shown.returncode != 0:
        raise NotFoundError(f"'{rev}': git commit {commit[:10]} has no {LOCK_FILE}.")
    return commit, parse_lock(decode_text(shown.stdout[: limit + 1], label), label)


def _same_state(snap: Snapshot, lock: Lock) -> bool:
    return snap.stages == lock.stages and snap.data == lock.data


def matching_snapshot(project: Project, lock: Lock, commit: str | None = None) -> str | None:
    """The sig of a stored snapshot holding the state `lock` records, or None."""
    from repro.records import list_records

    backend = project.cache.backend
    tried: set[str] = set()
    ordered = [r.snapshot for r in list_records(backend) if r.snapshot and r.git_commit == commit]
    for sig in [*ordered, *list_snapshots(backend)]:
        if sig in tried:
            continue
        tried.add(sig)
        try:
            if _same_state(load_snapshot(backend, sig), lock):
                return sig
        except ReproError:
            continue  # a bad snapshot is skipped here as everywhere
    return None


def _is_prefix(ref: str) -> bool:
    return len(ref) >= 7 and all(c in "0123456789abcdef" for c in ref.lower())


def tag_sig(project: Project, ref: str) -> str | None:
    """The sig tag `ref` names, or None when no tag has that name; a tag whose snapshot is
    not in the cache is one sentence saying where to get it."""
    from repro.snapshots import snapshot_key
    from repro.tags import read_tag

    backend = project.cache.backend
    tag = read_tag(backend, ref)
    if tag is None:
        return None
    if not backend.exists(snapshot_key(tag.sig)):
        raise NotFoundError(
            f"tag '{ref}' names snapshot {tag.sig[:12]}, which is not in the cache; "
            "'repro pull' may fetch it from a remote."
        )
    return tag.sig


def resolve_sig(project: Project, ref: str) -> str:
    """The full sig of the stored snapshot `ref` names: a sig prefix, or a git revision whose
    `repro.lock` state was recorded as a snapshot. A tag name wins over a git revision of the
    same name (a tag name is never 7+ hex characters, so it never shadows a sig prefix)."""
    backend = project.cache.backend
    tagged = tag_sig(project, ref)
    if tagged is not None:
        return tagged
    if _is_prefix(ref):
        try:
            return resolve(backend, ref)
        except NotFoundError:
            if git_lock(project, ref) is None:
                raise
    found = git_lock(project, ref)
    if found is None:
        if ref and all(c in "0123456789abcdef" for c in ref.lower()):
            resolve(backend, ref)  # raises its own sentence ("give at least 7 characters")
        raise NotFoundError(
            f"'{ref}': no snapshot sig (7+ characters), tag or git revision names it "
            "('repro tags' and 'repro log' list what there is)."
        )
    commit, lock = found
    sig = matching_snapshot(project, lock, commit)
    if sig is None:
        raise NotFoundError(
            f"'{ref}': no snapshot in the cache holds the state of {LOCK_FILE} at git commit "
            f"{commit[:10]}; 'repro pull' may fetch it from a remote."
        )
    return sig


def resolve_state(project: Project, ref: str) -> tuple[str, Snapshot]:
    """A state to compare: (its name, its record). A sig prefix or a git revision gives the
    stored snapshot when there is one; a git revision (or `repro.lock`) whose state was never
    stored gives the lock's own record, named `REV (commit)`."""
    backend = project.cache.backend
    if ref == LOCK_REF:
        lock = load_lock(project.lock_path)
        sig = matching_snapshot(project, lock)
        if sig is not None:
            return sig, load_snapshot(backend, sig)
        return LOCK_REF, Snapshot(lock.stages, lock.data, {}, {}, dict(lock.images))
    try:
        sig = resolve_sig(project, ref)
        return sig, load_snapshot(backend, sig)
    except NotFoundError:
        found = git_lock(project, ref) if not ref.startswith("-") else None
        if found is None:
            raise
    commit, lock = found
    return f"{ref} ({commit[:10]})", Snapshot(lock.stages, lock.data, {}, {}, dict(lock.images))
