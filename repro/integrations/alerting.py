"""The `alerts` observer: at the end of a run, alert on a failure and on what changed.

Active whenever `.repro/config.toml` has `[[alerts]]` (repro.observers.from_config adds it; it
may also be named in `[observe] use`). Its own table `[observe.alerts]` takes `budget`: the
seconds all deliveries of one alert may take together (default 10).

- A failed run, a failed stage, or a failed per-stage check (the `checks` a `stage_finished`
  event carries) fires one `failure` alert naming the stages and reasons.
- A run that made a snapshot is compared with the state before it: the snapshot `repro.lock`
  held when the run started (noted at `run_started`), else the newest earlier snapshot in the
  run records. The comparison is `repro.policy.assess` (the same policy as `diff` and `check`:
  severities, metric rules, failure rate, code-change size); the worst severity fires, with the
  changes. A first run (nothing before it) alerts on nothing but a failure.

Sending is repro.alerts.fire: bounded in time, what fails is queued as pending. A failure to
alert never changes the run's outcome; each undelivered alert is one `warning:` line.
"""

from __future__ import annotations

import sys
from typing import Any

from repro.alerts import DEFAULT_BUDGET, alert_event, fire, warning_lines
from repro.model import tidy


def factory(table: dict[str, Any]) -> AlertObserver:
    budget = table.get("budget", DEFAULT_BUDGET)
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget <= 300:
        from repro.errors import SpecError

        raise SpecError(
            ".repro/config.toml",
            f"must be seconds (0 to 300), not {budget!r:.50}",
            key="observe.alerts.budget",
        )
    return AlertObserver(float(budget))


class AlertObserver:
    """Notes the state before the run and the failures during it; alerts at its end."""

    def __init__(self, budget: float = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.root: str | None = None
        self.before: Any = None  # repro.lock as the run found it (a Lock), or None
        self.git_commit: str | None = None
        self.failures: list[str] = []
        self.failed_stages: list[str] = []
        self._deadline = 0.0

    def _project(self):
        from repro.project import Project

        return Project(self.root)

    def run_started(self, event: dict[str, Any]) -> None:
        from repro.errors import ReproError
        from repro.lockfile import load_lock

        self.root, self.git_commit = event["root"], event.get("git_commit")
        self.failures, self.failed_stages = [], []
        try:
            self.before = load_lock(self._project().lock_path)
        except ReproError:
            self.before = None

    def stage_finished(self, event: dict[str, Any]) -> None:
        stage = event.get("stage")
        if event.get("status") == "failed":
            code = event.get("exit_code")
            how = f" with exit code {code}" if code not in (None, 0) else ""
            self._failed(stage, f"stage '{stage}' failed{how}")
        for check in event.get("checks") or []:
            if isinstance(check, dict) and check.get("ok") is False:
                lines = str(check.get("message") or "").strip().splitlines()
                said = f": {lines[0][:200]}" if lines else ""
                kind = f" ({check['kind']})" if check.get("kind") else ""
                self._failed(
                    stage, f"stage '{stage}': check '{check.get('name')}'{kind} failed{said}"
                )

    def _failed(self, stage: Any, reason: str) -> None:
        if stage not in self.failed_stages:
            self.failed_stages.append(stage)
        self.failures.append(reason)

    def run_finished(self, event: dict[str, Any]) -> None:
        if self.root is None:
            return
        project = self._project()
        if not project.config.get("alerts"):
            return
        import time

        self._deadline = time.monotonic() + self.budget  # one budget for this run's alerts
        snapshot, run_id = event.get("snapshot"), event.get("run_id")
        if event.get("status") == "failed" and not self.failures:
            self.failures.append("the run failed")
        if self.failures:
            alert = alert_event("failure", snapshot, None, run_id, [], self.failures, "run")
            alert["stages"] = self.failed_stages
            self._send(project, alert)
        if snapshot:
            found = self._previous(project, run_id)
            if found is not None:
                self._changes(project, snapshot, run_id, *found)

    def _changes(self, project, snapshot: str, run_id: str, prev_sig: str | None, prev) -> None:
        from repro.snapshots import load_snapshot

        current = load_snapshot(project.cache.backend, snapshot)
        severity, changes = _assess(project, prev, current, prev_sig, self.git_commit)
        if severity is None:
            return
        reasons = [_reason(c) for c in changes if c.get("severity") == severity]
        reasons += [_reason(c) for c in changes if c.get("severity") != severity]
        previous = prev_sig or "repro.lock"
        self._send(
            project, alert_event(severity, snapshot, previous, run_id, changes, reasons, "run")
        )

    def _previous(self, project, run_id: str | None):
        """(sig or None, Snapshot) of the state before this run, or None for a first run."""
        from repro.errors import ReproError
        from repro.records import list_records
        from repro.snapshots import Snapshot, load_snapshot

        backend = project.cache.backend
        lock = self.before
        has_lock = lock is not None and bool(lock.stages or lock.data)
        for rec in list_records(backend):  # newest first
            if rec.run_id == run_id or not rec.snapshot:
                continue
            try:
                snap = load_snapshot(backend, rec.snapshot)
            except ReproError:
                continue
            if not has_lock or (snap.stages == lock.stages and snap.data == lock.data):
                return rec.snapshot, snap
        if has_lock:  # a lock whose state no record made (a fresh clone): its own record
            return None, Snapshot(lock.stages, lock.data, {}, {}, dict(lock.images))
        return None

    def _send(self, project, alert: dict[str, Any]) -> None:
        import time

        left = max(0.2, self._deadline - time.monotonic())  # past it: tried briefly, queued
        deliveries = fire(project.root, project.config, alert, budget=left)
        for line in warning_lines(deliveries):
            try:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass


def _assess(project, prev, current, prev_sig: str | None, head: str | None):
    """(worst severity or None, flat changes): `repro.policy.assess` when the policy module
    has it, else the plain diff."""
    from repro import policy

    assess = getattr(policy, "assess", None)
    if assess is not None:

        def commits() -> tuple[str | None, str | None]:
            found = policy.snapshot_commit(project, prev_sig) if prev_sig else None
            return found or head, None

        return assess(project, prev, current, b_is_workspace=True, commits=commits)
    from repro.diff import diff_snapshots

    stages, data = diff_snapshots(project, prev, current)
    changes = [{"stage": st["name"], **c} for st in stages for c in st["changes"]] + data
    sevs = {c.get("severity") for c in changes}
    return ("major" if "major" in sevs else "minor" if sevs else None), changes


def _reason(change: dict[str, Any]) -> str:
    """One sentence for people: where, what kind, which target, how much it matters."""
    where = f"stage '{change['stage']}': " if change.get("stage") else ""
    kind, target = change.get("kind"), change.get("target")
    if kind == "params":
        old, new = tidy(change.get("old")), tidy(change.get("new"))
        what = f"param {target} changed from {old!r} to {new!r}"
    elif kind == "failure_rate":
        what = f"{change.get('failed')} of the {target} failed"
    elif change.get("note") in ("stage added", "stage removed"):
        what = change["note"]
    else:
        what = f"{kind} {target} changed"
    metrics = change.get("metrics") or {}
    moved = [
        f"{k} {tidy(v.get('old'))} -> {tidy(v.get('new'))}"
        for k, v in metrics.items()
        if v.get("delta")
    ]
    if moved:
        what += " (" + ", ".join(moved[:5]) + ")"
    return f"{where}{what} [{change.get('severity')}]"
