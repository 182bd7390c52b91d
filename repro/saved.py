"""Saved work: what repro stored before overwriting or removing a workspace path.

A checkout or run that would overwrite content the cache lacks stores it first ("nothing is
lost", DESIGN.md). Each time that happens a line goes to `.repro/saved.jsonl`: the path, its
hash, whether it is a folder, when, and by which command. `repro restore` (no arguments) and
`repro log --saved` list them, and `repro gc` keeps their objects for `[gc] keep_saved_days`
(default 30) so the restore command that was printed keeps working.

JSON lines, appended with O_APPEND (one write per line): concurrent writers do not interleave,
and a line cut short by a crash is skipped when read.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from repro.safety import is_hash, rel_problem

SAVED_FILE = "saved.jsonl"
DEFAULT_KEEP_DAYS = 30.0


@dataclass(frozen=True)
class SavedItem:
    path: str
    hash: str
    isdir: bool
    when: float  # UNIX time
    command: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.when))
        d["restore"] = f"repro restore {self.hash} {self.path}"
        return d


def _file(dot: str) -> str:
    return os.path.join(dot, SAVED_FILE)


def _command() -> str:
    args = [os.path.basename(sys.argv[0]) if sys.argv else "repro", *sys.argv[1:]]
    if args and args[0] in ("cli.py", "__main__.py", "-c"):
        args[0] = "repro"
    return " ".join(args)[:500]


def record_saved(dot: str, path: str, h: str, isdir: bool) -> None:
    item = SavedItem(path, h, isdir, time.time(), _command())
    line = json.dumps(asdict(item), sort_keys=True) + "\n"
    # O_NOFOLLOW: a `.repro/saved.jsonl` that is a symlink (committed to git) leads nowhere.
    fd = os.open(_file(dot), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def list_saved(dot: str) -> Iterator[SavedItem]:
    """Every well-formed record, oldest first (a damaged line is skipped, never trusted)."""
    path = _file(dot)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                d = json.loads(line)
                item = SavedItem(
                    str(d["path"]),
                    str(d["hash"]),
                    bool(d["isdir"]),
                    float(d["when"]),
                    str(d.get("command", "")),
                )
            except (ValueError, KeyError, TypeError):
                continue
            if is_hash(item.hash) and rel_problem(item.path) is None:
                yield item


def kept_saved(dot: str, keep_days: float, now: float | None = None) -> list[SavedItem]:
    """The records younger than `keep_days`: their content is kept by gc."""
    now = time.time() if now is None else now
    return [s for s in list_saved(dot) if now - s.when < keep_days * 86400]
