"""Read a file that came from outside (a user, `git pull`, a shared folder) without letting it
hang or flood repro: regular files only, opened without blocking (a FIFO where `repro.lock`
should be cannot stall a command), size-capped, and UTF-8 or one sentence naming the file.

Below every parser (lock, spec, params, config), so each of them reads through it.
"""

from __future__ import annotations

import os
import stat

from repro.errors import SpecError

# ruamel's pure-Python parser reads only a few hundred KB per second, so a YAML file over 1 MiB
# would take many seconds (a real repro.yaml of 1 MiB holds ~10,000 stages); JSON and TOML
# parse faster.
MAX_BYTES = {"yaml": 1 << 20, "toml": 4 << 20, "json": 16 << 20}


def read_bytes(path: str, label: str, limit: int) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them.

    Opened without blocking, so a FIFO or device where a file should be cannot hang repro; a
    folder, a special file, an unreadable or oversized file is refused with a SpecError naming
    `label`. FileNotFoundError passes through (callers say what a missing file means)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise SpecError(f"{label}: is a folder, not a file.") from None
    except OSError as exc:
        raise SpecError(f"{label}: cannot be read ({exc.strerror or exc}).") from None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        what = "a folder, not a file" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise SpecError(f"{label}: is {what}.")
    if st.st_size > limit:
        os.close(fd)
        raise SpecError(
            f"{label}: is {st.st_size:,} bytes; repro reads files of this kind up to "
            f"{limit:,} bytes."
        )
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise SpecError(f"{label}: cannot be read ({exc.strerror or exc}).") from None
    if len(data) > limit:
        raise SpecError(
            f"{label}: is over {limit:,} bytes; repro reads files of this kind up to that."
        )
    return data


def decode_text(data: bytes, label: str) -> str:
    """UTF-8 text (a BOM is dropped), or a SpecError naming the byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError(
            f"{label}: is not UTF-8 text (line {line}, byte {exc.start}: 0x{data[exc.start]:02x})."
        ) from None
