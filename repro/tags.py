"""Tags: a name for a snapshot (`repro tag NAME SIG`), annotated and shared through push/pull.

A tag is stored as `tags/<name>` beside the snapshots (msgpack: format, name, sig, user, host,
UTC time, message), so any remote shares it. A tag that came from a remote is untrusted: its
key, name and every field are checked before it is used or copied, and a pull never moves a
local tag to another sig (git's "would clobber existing tag"): it says so in a warning instead.

Names are letters, digits, `.`, `_` and `-`: safe as a store key and as a file name on every
filesystem (no `/`, so a tag is one file), never starting with `-` (an option) or `.` (a hidden
file), at most 100 characters, and never 7+ hex characters (that reads as a sig prefix).
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from repro.canonical import packb, unpackb
from repro.errors import CorruptObjectError, NotFoundError, ReproError, UsageError
from repro.safety import is_hash
from repro.store.backend import Backend
from repro.store.layout import TAG_FORMAT, TAGS, check_format, snapshot_key, tag_key

MAX_NAME = 100
MAX_MESSAGE = 10_000
MAX_TAG_BYTES = 64 * 1024  # a tag record read from a remote is refused above this
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_RESERVED = {"head", "workspace", "repro.lock"}  # names that already mean a state
_DEVICES = {"con", "prn", "aux", "nul"} | {f"{d}{i}" for d in ("com", "lpt") for i in range(10)}
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


def name_problem(name: object) -> str | None:
    """Why `name` cannot be a tag name, or None."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if name[0] in "-.":
        return "starts with '-' or '.'"
    if not _NAME.fullmatch(name):
        return "may hold only letters, digits, '.', '_' and '-'"
    if ".." in name or name.endswith("."):
        return "holds '..' or ends with '.'"
    if len(name) >= 7 and all(c in "0123456789abcdef" for c in name.lower()):
        return "is all hex digits and would read as a snapshot sig"
    if name.lower() in _RESERVED:
        return "already names a state (HEAD, workspace, repro.lock)"
    if name.split(".")[0].lower() in _DEVICES:
        return "is a device name on Windows (CON, NUL, COM1, ...), no file can have it there"
    return None


def check_name(name: str) -> str:
    """`name`, or a UsageError saying in one sentence why it cannot be a tag name."""
    problem = name_problem(name)
    if problem:
        raise UsageError(f"tag name {name[:120]!r} {problem}; choose another name.")
    return name


def _line(v: object, limit: int, newlines: bool = False) -> bool:
    """Text without terminal control characters (`repro tags` prints it as it is)."""
    if not isinstance(v, str) or len(v) > limit:
        return False
    allowed = {"\n", "\t"} if newlines else set()
    return not any(_control(c) and c not in allowed for c in v)


def _control(c: str) -> bool:
    """C0 and C1 controls (U+009B is a terminal's CSI too) and the bidi overrides that make
    text print as something else."""
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069


@dataclass
class Tag:
    name: str
    sig: str
    user: str
    host: str
    time: str  # UTC ISO 8601
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def encode(self) -> bytes:
        return packb({"format": TAG_FORMAT, **self.to_dict()})

    @classmethod
    def decode(cls, data: bytes, name: str, source: str) -> Tag:
        """A stored tag filed as `tags/<name>`, every field checked: tags come from remotes."""
        if len(data) > MAX_TAG_BYTES:
            raise CorruptObjectError(f"{source}: is over {MAX_TAG_BYTES:,} bytes; not a tag.")
        try:
            d = unpackb(data)
        except Exception:
            raise CorruptObjectError(f"{source}: not a valid tag record.") from None
        if not isinstance(d, dict):
            raise CorruptObjectError(f"{source}: not a valid tag record.")
        check_format(d, TAG_FORMAT, source)
        problem = _record_problem(d, name)
        if problem:
            raise CorruptObjectError(f"{source}: {problem}; it is not used.")
        return cls(d["name"], d["sig"], d["user"], d["host"], d["time"], d.get("message", ""))


def _record_problem(d: dict[str, Any], name: str) -> str | None:
    if name_problem(name):
        return f"is filed under {name[:40]!r}, {name_problem(name)}"
    if d.get("name") != name:
        return f"names another tag ({str(d.get('name'))[:40]!r})"
    if not is_hash(d.get("sig")):
        return f"field 'sig' {str(d.get('sig'))[:40]!r} is not a hash"
    for k in ("user", "host"):
        if not _line(d.get(k), 256):
            return f"field {k!r} is not a short line of text"
    if not isinstance(d.get("time"), str) or not _TIME.fullmatch(d["time"]):
        return "field 'time' is not a UTC time"
    if not _line(d.get("message", ""), MAX_MESSAGE, newlines=True):
        return "field 'message' is not text"
    return None


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


# -- reading ----------------------------------------------------------------------------------
def read_tag(backend: Backend, name: str, source: str | None = None) -> Tag | None:
    """The tag `name` in `backend`, None when there is none (or the name cannot be a tag);
    a damaged or crafted record raises CorruptObjectError."""
    if name_problem(name):
        return None
    try:
        if source is not None and backend.size(tag_key(name)) > MAX_TAG_BYTES:
            # a remote's: sized before it is read, so a huge one is not loaded into memory
            raise CorruptObjectError(f"{source}: is over {MAX_TAG_BYTES:,} bytes; not a tag.")
        data = backend.read_bytes(tag_key(name))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return Tag.decode(data, name, source or f"tag '{name}'")


def tag_names(backend: Backend) -> list[str]:
    """The names filed under `tags/` that can be tags (other keys are not looked at)."""
    names = (k[len(TAGS) + 1 :] for k in backend.list(TAGS) if k.startswith(TAGS + "/"))
    return sorted(n for n in names if not name_problem(n))


def list_tags(backend: Backend, bad: list[str] | None = None) -> list[Tag]:
    """Every good tag, newest first; a bad one is skipped (its key appended to `bad`)."""
    out = []
    for name in tag_names(backend):
        try:
            tag = read_tag(backend, name)
        except ReproError:
            if bad is not None:
                bad.append(tag_key(name))
            continue
        if tag is not None:
            out.append(tag)
    return sorted(out, key=lambda t: (t.time, t.name), reverse=True)


def tagged_sigs(backend: Backend) -> set[str]:
    """The sigs the good tags name: gc keeps these snapshots and what they reach."""
    return {t.sig for t in list_tags(backend)}


def tags_of(backend: Backend, sig: str) -> list[str]:
    return [t.name for t in list_tags(backend) if t.sig == sig]


# -- writing ----------------------------------------------------------------------------------
def make_tag(backend: Backend, name: str, sig: str, message: str = "", force: bool = False) -> Tag:
    """Tag snapshot `sig` (a full sig whose snapshot is stored) as `name`. Moving a tag that
    names another sig needs `force`; tagging the same sig again keeps the first record."""
    check_name(name)
    other = _case_twin(tag_names(backend), name)
    if other:
        raise UsageError(
            f"tag name '{name}' differs only in case from tag '{other}'; they would be one "
            "file on macOS and Windows, so choose another name."
        )
    if not _line(message, MAX_MESSAGE, newlines=True):
        raise UsageError(
            f"tag message: longer than {MAX_MESSAGE:,} characters or holds control characters."
        )
    try:
        old = read_tag(backend, name)
    except ReproError:
        old = None  # a damaged record is replaced
    if old is not None and old.sig != sig and not force:
        raise UsageError(
            f"tag '{name}' already names snapshot {old.sig[:12]}; give --force to move it "
            f"to {sig[:12]}."
        )
    if old is not None and old.sig == sig and not message:
        return old
    tag = Tag(name, sig, _user(), socket.gethostname(), _now(), message)
    backend.write_bytes(tag_key(name), tag.encode())
    return tag


def _case_twin(names: list[str] | set[str], name: str) -> str | None:
    """Another of `names` that is `name` but for case (one file where case is ignored)."""
    low = name.lower()
    return next((n for n in sorted(names) if n != name and n.lower() == low), None)


def delete_tag(backend: Backend, name: str) -> None:
    check_name(name)
    if not backend.exists(tag_key(name)):
        raise NotFoundError("tag", name, hint="'repro tags' lists them")
    backend.delete(tag_key(name))


# -- sharing ----------------------------------------------------------------------------------
def push_tags(local: Backend, remote: Backend, remote_name: str) -> tuple[int, list[str]]:
    """Send the local tags the remote lacks: (how many, warnings). A remote tag of the same
    name that names another sig is left as it is, with a warning."""
    sent, warnings = 0, []
    mine = list_tags(local)
    if not mine:
        return 0, []  # no listing of the remote when there is nothing to send
    theirs = set(tag_names(remote))
    for tag in mine:
        if tag.name in theirs:
            try:
                there = read_tag(remote, tag.name, f"remote '{remote_name}': tag '{tag.name}'")
            except ReproError as exc:
                warnings.append(f"{exc.message} (not replaced; 'repro tag -d' it there)")
                continue
            if there is not None and there.sig != tag.sig:
                warnings.append(
                    f"remote '{remote_name}': tag '{tag.name}' there names {there.sig[:12]}, "
                    f"here {tag.sig[:12]}; not pushed (would clobber the remote's tag)"
                )
            continue
        if not remote.exists(snapshot_key(tag.sig)):  # e.g. a damaged snapshot stayed here
            warnings.append(
                f"remote '{remote_name}': tag '{tag.name}' names snapshot {tag.sig[:12]}, which "
                "the remote does not hold; not pushed"
            )
            continue
        remote.write_bytes(tag_key(tag.name), tag.encode())
        sent += 1
    return sent, warnings


def pull_tags(
    local: Backend, remote: Backend, remote_name: str, have_snapshot: Any
) -> tuple[int, list[str]]:
    """Take the remote's tags the local cache lacks: (how many, warnings). Every one is
    untrusted: a key that is no tag name, a record of the wrong shape, or a tag whose
    snapshot is neither here nor on the remote is refused with a warning and nothing is
    written; a local tag of the same name is never moved."""
    got, warnings = 0, []
    source = f"remote '{remote_name}'"
    known = set(tag_names(local))
    for key in sorted(remote.list(TAGS)):
        name = key[len(TAGS) + 1 :] if key.startswith(TAGS + "/") else key
        problem = name_problem(name)
        if problem:
            warnings.append(f"{source}: tag key {key[:120]!r} {problem}; skipped")
            continue
        other = _case_twin(known, name)
        if other:
            warnings.append(
                f"{source}: tag '{name}' differs only in case from tag '{other}' (one file "
                "on macOS and Windows); skipped"
            )
            continue
        try:
            tag = read_tag(remote, name, f"{source}: tag '{name}'")
        except ReproError as exc:
            warnings.append(f"{exc.message.rstrip('.').removesuffix('; it is not used')}; skipped")
            continue
        if tag is None:
            continue
        try:
            mine = read_tag(local, name)
        except ReproError:
            mine = None
        if mine is not None:
            if mine.sig != tag.sig:
                warnings.append(
                    f"{source}: tag '{name}' names {tag.sig[:12]} there and {mine.sig[:12]} "
                    "here; kept the local one (would clobber existing tag)"
                )
            continue
        if not have_snapshot(tag.sig):
            warnings.append(
                f"{source}: tag '{name}' names snapshot {tag.sig[:12]}, which neither the "
                "remote nor this cache holds; skipped"
            )
            continue
        local.write_bytes(tag_key(name), tag.encode())
        known.add(name)
        got += 1
    return got, warnings
