"""Observers: code told about every run and stage as it happens (DESIGN.md, "Extension points").

The runner knows only `Reporter`, an object whose methods do nothing (resolvelib's reporter
style); it calls `run_started`, `stage_started`, `stage_finished` and `run_finished` on it.
`from_config` gives that no-op reporter when `[observe] use` names nothing, so a project without
observers pays for neither an entry-point scan nor event dicts. Otherwise it gives `Observers`,
which turns each call into the documented event (a plain dict with `"event"`, `"v": 1`,
`"run_id"`, `"time"` in UTC ISO 8601, and the event's fields) and hands it to each observer in
turn, under one lock, so with `-j N` calls are serialised and arrive in order. An observer that
raises is reported once on stderr and never changes the run's outcome.

Observers are the built-in `jsonl` and what packages register under the entry-point group
`repro.observers` (`name = "module:factory"`); a factory is called with the observer's own
config table (`[observe.NAME]`, or `{}`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

GROUP = "repro.observers"
EVENT_VERSION = 1
DEFAULT_EVENTS_PATH = ".repro/events.jsonl"
_CONFIG = ".repro/config.toml"


class Reporter:
    """What the runner tells about a run. Every method does nothing: subclass and override."""

    def run_started(
        self, run_id: str, root: str, targets: list[str], git_commit: Callable[[], str | None]
    ) -> None:
        """`git_commit` is asked only by a reporter that wants it (git runs in the background)."""

    def stage_started(self, stage: str, signature: str | None, reasons: list[dict]) -> None:
        pass

    def stage_finished(
        self,
        stage: str,
        status: str,
        signature: str | None,
        seconds: float,
        exit_code: int | None,
        executor: str | None,
        outs: dict[str, str],
        checks: list[dict] | None = None,
    ) -> None:
        """`checks`: the stage's `observe:` outcomes (None or empty when none ran)."""

    def run_finished(self, snapshot: str | None, status: str, stages: dict[str, str]) -> None:
        pass


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def warn(text: str) -> None:
    """One `warning:` line on stderr; a closed stderr is no reason to fail a run."""
    import sys

    try:
        sys.stderr.write(f"warning: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _clause(exc: BaseException) -> str:
    from repro.errors import first_line

    return f"{type(exc).__name__}: {first_line(exc).rstrip('.')}"


class Observers(Reporter):
    """Fans each call out, as an event dict, to the active observers."""

    def __init__(self, observers: list[tuple[str, Any]]) -> None:
        self.observers = observers
        self.run_id = ""
        self._lock = threading.Lock()
        self._failed: set[str] = set()

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        import copy

        with self._lock:
            doc = {"event": event, "v": EVENT_VERSION, "run_id": self.run_id, "time": _now()}
            doc.update(fields)
            for name, observer in self.observers:
                method = getattr(observer, event, None)
                if method is None:
                    continue
                try:
                    method(copy.deepcopy(doc))  # one observer cannot change what the next sees
                except Exception as exc:
                    if name not in self._failed:
                        self._failed.add(name)
                        warn(f"observer '{name}' failed: {_clause(exc)}")

    def run_started(
        self, run_id: str, root: str, targets: list[str], git_commit: Callable[[], str | None]
    ) -> None:
        import getpass
        import socket

        self.run_id = run_id
        try:
            user = getpass.getuser()
        except Exception:
            user = str(os.getuid())
        fields = {
            "root": root,
            "targets": list(targets),
            "user": user,
            "host": socket.gethostname(),
            "git_commit": git_commit(),
        }
        self._emit("run_started", fields)

    def stage_started(self, stage: str, signature: str | None, reasons: list[dict]) -> None:
        self._emit("stage_started", {"stage": stage, "signature": signature, "reasons": reasons})

    def stage_finished(
        self,
        stage: str,
        status: str,
        signature: str | None,
        seconds: float,
        exit_code: int | None,
        executor: str | None,
        outs: dict[str, str],
        checks: list[dict] | None = None,
    ) -> None:
        fields = {
            "stage": stage,
            "status": status,
            "signature": signature,
            "seconds": seconds,
            "exit_code": exit_code,
            "executor": executor,
            "outs": dict(outs),
        }
        if checks:  # only a stage whose `observe:` checks ran has them (DESIGN's fields stay)
            fields["checks"] = list(checks)
        self._emit("stage_finished", fields)

    def run_finished(self, snapshot: str | None, status: str, stages: dict[str, str]) -> None:
        self._emit("run_finished", {"snapshot": snapshot, "status": status, "stages": stages})


def from_config(config: dict[str, Any], root: str) -> Reporter:
    """The reporter for a run: a no-op one unless `[observe] use` names observers or the
    config has `[[alerts]]` (which activate the `alerts` observer by themselves). One that
    is not installed or cannot be set up is reported on stderr and left out: observers never
    change whether a run happens."""
    observe = config.get("observe") or {}
    names = list(observe.get("use") or [])
    if config.get("alerts") and "alerts" not in names:
        names.append("alerts")  # [[alerts]] entries are the alerts observer's whole config
    if not names:
        return Reporter()
    active: list[tuple[str, Any]] = []
    for name in dict.fromkeys(names):
        table = observe.get(name)
        table = dict(table) if isinstance(table, dict) else {}
        try:
            factory = _factory(name, root)
            if factory is None:
                warn(
                    f"{_CONFIG}: [observe] use names observer '{name}', which is not installed "
                    f"(no entry point '{name}' in the group '{GROUP}'); ignoring it"
                )
                continue
            active.append((name, factory(table)))
        except Exception as exc:
            warn(f"observer '{name}' failed: {_clause(exc)}")
    return Observers(active) if active else Reporter()


def _factory(name: str, root: str) -> Callable[[dict[str, Any]], Any] | None:
    if name == "jsonl":
        return lambda table: JsonlObserver(table, root)
    from importlib.metadata import entry_points

    found = next(iter(entry_points(group=GROUP, name=name)), None)
    return None if found is None else found.load()


class JsonlObserver:
    """Appends each event as one JSON line to `[observe.jsonl] path` (default
    `.repro/events.jsonl`). The path comes from a committed config file, so it is held to the
    project: relative, no `..`, not into `.git`, not one of repro's own files, and no symlink
    on the way leads out."""

    def __init__(self, table: dict[str, Any], root: str) -> None:
        self.path = events_path(root, table.get("path", DEFAULT_EVENTS_PATH))

    def _append(self, event: dict[str, Any]) -> None:
        import json

        line = json.dumps(event, sort_keys=True, default=str) + "\n"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    run_started = stage_started = stage_finished = run_finished = _append


def events_path(root: str, value: Any) -> str:
    """The absolute path the jsonl observer may append to, from its configured `value`."""
    from repro.errors import UntrustedInputError
    from repro.safety import Boundary, output_problem, rel_problem

    source, field = f"{_CONFIG}: [observe.jsonl]", "path"
    problem = rel_problem(value, owned=False)
    parts = value.split("/") if problem is None else []
    if problem is None and parts[0] == ".repro":
        # repro's own folder: only a file of its own there (repro keeps `saved.jsonl` there).
        if len(parts) != 2 or not parts[1].endswith(".jsonl") or parts[1] == "saved.jsonl":
            problem = "is inside .repro/ but is not a new *.jsonl file directly in it"
    elif problem is None:
        problem = output_problem(value)
    if problem is not None:
        raise UntrustedInputError(source, field, value, problem)
    path = os.path.join(root, *parts)
    if parts[0] == ".repro":
        real = os.path.realpath(os.path.dirname(path))
        if real != os.path.realpath(os.path.join(root, ".repro")):
            raise UntrustedInputError(source, field, value, f"leads elsewhere (to {real})")
    else:
        Boundary(root).check_write(path, source)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path
