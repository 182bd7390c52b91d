"""The `prometheus` observer: each run's metrics for Prometheus (`[observe] use = ["prometheus"]`).

A repro run is a batch job, so its metrics describe the last run (gauges), as the Pushgateway
and node_exporter's textfile collector expect: duration per stage, stages by outcome, cache
hits (restored or up to date) and misses (ran or failed), failures, the run's duration, bytes of
outputs written, and the time of the last successful run. That last one must survive failed
runs; it is read back from the run records (run ids sort by time), so it is right even for a
cache shared by several machines, and needs no state file of its own.

Destinations, any or all of them:
- `[observe.prometheus] textfile`: a file in the project. The config is committed to git, so the
  path is held to the project as the jsonl observer's is (relative, no `..`, not `.git`, no
  symlink leading out; `.repro/NAME.prom` is allowed).
- `REPRO_PROMETHEUS_TEXTFILE`: any absolute path, set by the machine's owner: a folder (such as
  node_exporter's `--collector.textfile.directory`; the file is `repro_<project>.prom` in it)
  or a file.
- `[observe.prometheus] pushgateway`: a Pushgateway URL; metrics are pushed under `job`
  (default `repro`) grouped by `project` (the project folder's name). A Pushgateway that is
  down or slow costs one warning line and at most `timeout` seconds (default 5).

Files are written atomically (a temporary file in the same folder, then a rename), so the
collector never reads half a file. `prometheus_client` is imported only here, at the end of a
run.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

ENV_TEXTFILE = "REPRO_PROMETHEUS_TEXTFILE"
DEFAULT_JOB = "repro"
DEFAULT_TIMEOUT = 5.0
OUTCOMES = ("ran", "restored", "up-to-date", "failed", "skipped")
HITS = ("restored", "up-to-date")
MISSES = ("ran", "failed")
_SOURCE = ".repro/config.toml: [observe.prometheus]"
_RECORDS_LOOKED_AT = 500  # bound on the records read back to find the last success


def factory(table: dict[str, Any]) -> PrometheusObserver:
    """Entry point `repro.observers: prometheus`."""
    import importlib.util

    if importlib.util.find_spec("prometheus_client") is None:
        from repro.errors import MissingExtraError

        raise MissingExtraError("the Prometheus observer", "prometheus")
    if not (table.get("textfile") or table.get("pushgateway") or os.environ.get(ENV_TEXTFILE)):
        _warn(
            "observer 'prometheus' has nowhere to write: set [observe.prometheus] textfile or "
            f"pushgateway in .repro/config.toml, or {ENV_TEXTFILE}"
        )
    return PrometheusObserver(table)


@dataclass
class StageMetrics:
    status: str
    seconds: float
    outs: dict[str, str] = field(default_factory=dict)


@dataclass
class RunMetrics:
    """What one run reports: filled in from the events, turned into gauges at the end."""

    project: str
    run_id: str = ""
    started: float = 0.0
    ended: float = 0.0
    status: str = "failed"
    stages: dict[str, StageMetrics] = field(default_factory=dict)
    output_bytes: dict[str, int] = field(default_factory=dict)
    last_success: float | None = None

    def count(self, outcomes: tuple[str, ...]) -> int:
        return sum(1 for s in self.stages.values() if s.status in outcomes)


class PrometheusObserver:
    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table
        self.root = ""
        self.run: RunMetrics | None = None

    # -- events ---------------------------------------------------------------------------
    def run_started(self, event: dict[str, Any]) -> None:
        self.root = event["root"]
        self.run = RunMetrics(project=os.path.basename(self.root), run_id=event["run_id"])
        self.run.started = time.time()

    def stage_finished(self, event: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.stages[event["stage"]] = StageMetrics(
                event["status"], float(event["seconds"] or 0.0), dict(event.get("outs") or {})
            )

    def run_finished(self, event: dict[str, Any]) -> None:
        run = self.run
        if run is None:
            return
        run.ended = time.time()
        run.status = event["status"]
        for name, status in (event.get("stages") or {}).items():
            run.stages.setdefault(name, StageMetrics(status, 0.0))
        run.output_bytes = _output_bytes(self.root, run)
        # From the records (this run's included: it is saved before run_finished), so the
        # value is the same whichever run, machine or observer reports it.
        run.last_success = _last_success(self.root)
        if run.last_success is None and run.status == "ok":
            run.last_success = run.ended
        self._deliver(run)

    # -- where the metrics go -------------------------------------------------------------
    def _deliver(self, run: RunMetrics) -> None:
        from prometheus_client import generate_latest

        paths = self._textfiles(run.project)
        if paths:
            text = generate_latest(_registry(run, {"project": run.project}))
            for path in paths:
                _write_atomic(path, text)
        gateway = self.table.get("pushgateway")
        if gateway:
            self._push(gateway, run)

    def _textfiles(self, project: str) -> list[str]:
        paths = []
        if self.table.get("textfile"):
            paths.append(textfile_path(self.root, self.table["textfile"]))
        machine = os.environ.get(ENV_TEXTFILE)
        if machine:
            if not os.path.isabs(machine):
                _warn(f"{ENV_TEXTFILE} must be an absolute path, not {machine!r}; ignoring it")
            elif os.path.isdir(machine):
                paths.append(os.path.join(machine, f"repro_{_slug(project)}.prom"))
            else:
                paths.append(machine)
        return paths

    def _push(self, gateway: str, run: RunMetrics) -> None:
        from prometheus_client import push_to_gateway

        job = str(self.table.get("job") or DEFAULT_JOB)
        timeout = float(self.table.get("timeout", DEFAULT_TIMEOUT))
        try:
            push_to_gateway(
                gateway,
                job=job,
                registry=_registry(run, {}),
                grouping_key={"project": run.project},
                timeout=timeout,
            )
        except Exception as exc:  # down, refused, slow, or an HTTP error: never the run's problem
            _warn(f"observer 'prometheus': could not push to the Pushgateway at {gateway} ({exc})")


def _registry(run: RunMetrics, labels: dict[str, str]) -> Any:
    """The run's gauges in a registry of their own (never the process's global one)."""
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry()
    names = list(labels)
    values = list(labels.values())

    def gauge(name: str, doc: str, value: float) -> None:
        g = Gauge(name, doc, names, registry=reg)
        (g.labels(*values) if names else g).set(value)

    def per(name: str, doc: str, label: str, items: dict[str, float]) -> None:
        g = Gauge(name, doc, [*names, label], registry=reg)
        for key, value in items.items():
            g.labels(*values, key).set(value)

    gauge("repro_last_run_timestamp_seconds", "When the last repro run ended.", run.ended)
    gauge("repro_last_run_duration_seconds", "How long the last run took.", run.ended - run.started)
    gauge("repro_last_run_success", "1 when the last run succeeded, else 0.", run.status == "ok")
    if run.last_success is not None:
        gauge(
            "repro_last_success_timestamp_seconds",
            "When the last successful run ended.",
            run.last_success,
        )
    per(
        "repro_last_run_stages",
        "Stages of the last run by outcome.",
        "outcome",
        {o: run.count((o,)) for o in OUTCOMES},
    )
    gauge(
        "repro_last_run_cache_hits",
        "Stages of the last run restored from the cache or up to date.",
        run.count(HITS),
    )
    gauge("repro_last_run_cache_misses", "Stages of the last run that ran.", run.count(MISSES))
    gauge("repro_last_run_failures", "Stages of the last run that failed.", run.count(("failed",)))
    per(
        "repro_stage_duration_seconds",
        "Seconds each stage took in the last run.",
        "stage",
        {n: s.seconds for n, s in run.stages.items()},
    )
    per(
        "repro_stage_output_bytes",
        "Bytes of outputs each stage wrote (ran or restored) in the last run.",
        "stage",
        dict(run.output_bytes),
    )
    gauge(
        "repro_last_run_output_bytes",
        "Bytes of outputs written in the last run.",
        sum(run.output_bytes.values()),
    )
    return reg


def _output_bytes(root: str, run: RunMetrics) -> dict[str, int]:
    """Bytes each stage that ran or was restored wrote, from the sizes repro.lock records for
    the very hashes the stage reported (a size is known only where the lock has it)."""
    from repro.lockfile import load_lock

    try:
        lock = load_lock(os.path.join(root, "repro.lock"))
    except Exception:
        return {}
    out: dict[str, int] = {}
    for name, stage in run.stages.items():
        if stage.status not in ("ran", "restored"):
            continue
        recorded = (lock.stages.get(name) or {}).get("outs") or {}
        total = 0
        for path, digest in stage.outs.items():
            entry = recorded.get(path) or {}
            if entry.get("hash") == digest and isinstance(entry.get("size"), int):
                total += entry["size"]
        out[name] = total
    return out


def _last_success(root: str) -> float | None:
    """When the newest successful run recorded in the local cache ended, or None."""
    from repro.records import load_record
    from repro.store.backend import LocalBackend
    from repro.store.layout import RECORDS, name_of

    backend = LocalBackend(os.path.join(root, ".repro", "cache"))
    try:
        ids = sorted((name_of(k) for k in backend.list(RECORDS)), reverse=True)
    except Exception:  # no records folder, or one that leads out (refused): nothing known
        return None
    for rid in ids[:_RECORDS_LOOKED_AT]:
        try:
            rec = load_record(backend, rid)
        except Exception:
            continue
        if rec.status == "ok" and rec.kind == "run":
            return _epoch(rec.ended)
    return None


def _epoch(stamp: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def textfile_path(root: str, value: Any) -> str:
    """The absolute path `[observe.prometheus] textfile` may be written at: held to the
    project, like the jsonl observer's path (the value comes from a committed file)."""
    from repro.errors import UntrustedInputError
    from repro.safety import Boundary, output_problem, rel_problem

    problem = rel_problem(value, owned=False)
    parts = value.split("/") if problem is None else []
    if problem is None and parts[0] == ".repro":
        if len(parts) != 2 or not parts[1].endswith(".prom"):
            problem = "is inside .repro/ but is not a *.prom file directly in it"
    elif problem is None:
        problem = output_problem(value)
    if problem is not None:
        raise UntrustedInputError(_SOURCE, "textfile", value, problem)
    path = os.path.join(root, *parts)
    if parts[0] == ".repro":
        real = os.path.realpath(os.path.dirname(path))
        if real != os.path.realpath(os.path.join(root, ".repro")):
            raise UntrustedInputError(_SOURCE, "textfile", value, f"leads elsewhere (to {real})")
    else:
        Boundary(root).check_write(path, _SOURCE)
        problem = _not_ours(root, value, path)
        if problem is not None:
            raise UntrustedInputError(_SOURCE, "textfile", value, problem)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def _not_ours(root: str, rel: str, path: str) -> str | None:
    """Why the workspace file at `path` is not ours to replace, or None: the value comes from a
    committed file, so it must not name a file git tracks (source code) or any other file
    that is not a textfile repro wrote (a data file, a stage's output)."""
    from repro.gitignore import git_tracked

    if git_tracked(root, [rel]):
        return "is a file git tracks"
    if os.path.lexists(path):
        try:
            with open(path, "rb") as f:
                head = f.read(len(_OURS))
        except OSError:
            head = b""
        if not os.path.isfile(path) or head != _OURS:
            return "is a file repro did not write (not a Prometheus textfile of repro's)"
    return None


_OURS = b"# HELP repro_"


def _write_atomic(path: str, data: bytes) -> None:
    """A new file beside `path` (created exclusively: never through a planted symlink), then
    renamed over it, so a collector reads the old file or the new one, never half of one."""
    from repro.atomicfile import write_atomic

    write_atomic(path, data, 0o644, prefix=".repro-")  # node_exporter often runs as another user


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "project"


def _warn(text: str) -> None:
    from repro.observers import warn

    warn(text)
