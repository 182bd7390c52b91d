"""Put a cached object into the workspace with the fastest safe method the filesystem offers.

Order (configurable as `cache.link` in `.repro/config.toml`): reflink (a copy-on-write clone:
instant and fully independent), hardlink (to an object made read-only, so tools that write in
place fail rather than corrupt the cache; editors that save by rename just break the link), copy.
A method the filesystem refuses once is not tried again in this process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

FICLONE = 0x40049409
DEFAULT_LINKS = ("reflink", "hardlink", "copy")
ROOT_LINKS = ("reflink", "copy")


def default_links() -> tuple[str, ...]:
    """The methods used when `.repro/config.toml` names none. Root ignores the read-only bit
    that keeps tools from writing into a hardlinked object, so as root repro does not hardlink
    (an in-place edit would change the cached object); everyone else gets hardlinks."""
    return ROOT_LINKS if os.geteuid() == 0 else DEFAULT_LINKS


_refused: set[tuple[str, int]] = set()


def _reflink(src: str, tmp: str) -> None:
    with open(src, "rb") as s, open(tmp, "wb") as d:
        fcntl.ioctl(d.fileno(), FICLONE, s.fileno())


def _tmp_beside(dst: str) -> str:
    from repro.store.backend import unique_name

    folder = os.path.dirname(dst) or "."
    _note_folder(folder)
    # The name is cut to 100 bytes' worth of characters: a file name near the 255-byte limit
    # plus the unique tag would be longer than the filesystem allows.
    base = os.path.basename(dst).encode()[:100].decode(errors="ignore") or "f"
    return os.path.join(folder, f".{base}.{unique_name()}")


# Folders where this process makes temporaries beside workspace files, written down (one line
# per folder, before the first temporary there) while it holds the project lock, so that the
# next command can remove them should this one be killed (`repro.pipeline.runlock`).
_journal: dict[str, object] = {"fd": None, "path": None, "seen": set()}


def set_journal(tmp_dir: str | None) -> None:
    """Start writing the journal in `tmp_dir`, or (None) stop and remove it: nothing of ours
    is left beside workspace files once the command that holds the lock is done."""
    from repro.store.backend import _run_tag

    fd, path = _journal["fd"], _journal["path"]
    if isinstance(fd, int):
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(str(path))
    _journal.update(fd=None, path=None, seen=set())
    if tmp_dir is None:
        return
    with contextlib.suppress(OSError):
        os.makedirs(tmp_dir, exist_ok=True)
        path = os.path.join(tmp_dir, f"beside-{_run_tag}")
        _journal.update(fd=os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), path=path)


def _note_folder(folder: str) -> None:
    fd, seen = _journal["fd"], _journal["seen"]
    if not isinstance(fd, int) or not isinstance(seen, set) or folder in seen:
        return
    seen.add(folder)
    with contextlib.suppress(OSError):
        os.write(fd, (os.path.abspath(folder) + "\n").encode())


def read_only_mode(executable: bool) -> int:
    return 0o555 if executable else 0o444


def place(
    src: str,
    dst: str,
    executable: bool,
    methods: tuple[str, ...] = DEFAULT_LINKS,
    dev: int | None = None,
) -> str:
    """Make `dst` hold the content of the cache object `src`; return the method used.

    `dst` is replaced atomically (a temporary name beside it, then rename; a hardlink to a
    free name needs neither); its parent folder must exist.
    """
    if dev is None:
        dev = os.stat(os.path.dirname(dst) or ".").st_dev
    for method in methods:
        if (method, dev) in _refused:
            continue
        tmp = _tmp_beside(dst)
        try:
            if method == "reflink":
                _reflink(src, tmp)
                os.chmod(tmp, 0o755 if executable else 0o644)
            elif method == "hardlink":
                if bool(os.stat(src).st_mode & 0o111) != executable:
                    continue  # the object's mode is shared with every link: copy instead
                try:
                    os.link(src, dst)  # a new name appears atomically: no temporary needed
                    return method
                except FileExistsError:
                    os.link(src, tmp)
            elif method == "copy":
                import shutil

                shutil.copyfile(src, tmp)
                os.chmod(tmp, 0o755 if executable else 0o644)
            else:
                raise ValueError(f"unknown link method {method!r}")
            os.replace(tmp, dst)
            return method
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if method != "copy" and exc.errno in (
                errno.EOPNOTSUPP,
                errno.ENOTTY,
                errno.EXDEV,
                errno.EINVAL,
                errno.EPERM,
                errno.EMLINK,
                errno.ENOSYS,
            ):
                _refused.add((method, dev))
                continue
            raise
    raise OSError(f"no link method in {methods} could place {dst}")


def write_file(dst: str, data: bytes | memoryview, executable: bool) -> None:
    """Make `dst` a new, writable file holding `data` (a packed object checked out): written
    under a temporary name beside it, then renamed over whatever is there. Its parent folder
    must exist."""
    mode = 0o755 if executable else 0o644
    tmp = _tmp_beside(dst)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)  # the umask must not take bits the tree records
        finally:
            os.close(fd)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
