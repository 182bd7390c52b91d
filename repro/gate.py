"""CI gates: `repro check` judges the workspace against a baseline and gives a verdict.

It combines `repro status` (a stale stage means the committed state was not reproduced: the
gate fails) with `repro diff BASELINE workspace` under the change policy (repro/policy.py), plus
the failure-rate rule over the run history. The baseline is any state `diff` takes; by default
the last snapshot on the default branch: the `repro.lock` at `origin/HEAD` (else `origin/main`,
`origin/master`, `main`, `master`), else this checkout's `repro.lock`. The verdict is the worst
severity found (`major`, `minor` or `ok`), with one reason per finding, worst first. The
project's `[[alerts]]` are fired with the verdict; an alert that fails never changes it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from repro.errors import NotFoundError, UsageError
from repro.model import tidy
from repro.pipeline.probes import CACHED, Probes
from repro.policy import RANK, failure_findings, flat_changes, meets, worst
from repro.project import Project

FAIL_ON = ("major", "minor")
DEFAULT_BRANCHES = ("origin/HEAD", "origin/main", "origin/master", "main", "master")
_ORDER = {"major": 0, "stale": 1, "minor": 2}


@dataclass
class Reason:
    """One finding: a change, a stale stage or the failure rate, as one line of text."""

    severity: str  # major | minor | stale
    text: str
    kind: str
    target: str
    stage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "stage": self.stage,
            "kind": self.kind,
            "target": self.target,
            "text": self.text,
        }


@dataclass
class Verdict:
    """What `repro check` found; `to_dict()` is its `--json` document."""

    verdict: str  # major | minor | ok
    baseline: str
    reasons: list[Reason]
    stale: list[dict[str, Any]]
    changes: dict[str, Any]  # the `diff --json` document, baseline -> workspace
    fail_on: str | None = None
    alerts: list[Any] = field(default_factory=list)  # what each fired alert reported

    @property
    def failed(self) -> bool:
        """Whether the gate fails (exit 1): a stage is stale, or `fail_on` is met."""
        return bool(self.stale) or meets(
            self.verdict if self.verdict != "ok" else None, self.fail_on
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "baseline": self.baseline,
            "fail_on": self.fail_on,
            "failed": self.failed,
            "reasons": [r.to_dict() for r in self.reasons],
            "stale": self.stale,
            "changes": self.changes,
            "alerts": [a.to_dict() if hasattr(a, "to_dict") else a for a in self.alerts],
        }


def default_baseline(project: Project) -> str:
    """The ref of the last snapshot on the default branch: the first of DEFAULT_BRANCHES whose
    commit holds a repro.lock, else `repro.lock` (this checkout's recorded state)."""
    from repro.refs import LOCK_REF, git_lock

    for rev in DEFAULT_BRANCHES:
        try:
            if git_lock(project, rev) is not None:
                return rev
        except NotFoundError:
            continue  # that commit has no repro.lock: try the next name
    return LOCK_REF


def _fmt(v: Any) -> str:
    if isinstance(v, dict) and "hash" in v:
        return v["hash"][:10]
    v = tidy(v)
    text = "none" if v is None else (v if isinstance(v, str) else json.dumps(v, default=str))
    text = " ".join(text.split())  # one line per reason, whatever a value holds
    return text if len(text) <= 80 else text[:77] + "..."


def _change_reasons(c: dict[str, Any]) -> list[Reason]:
    """The lines one change gives: one per moved metric for a metrics file, else one."""
    stage, kind, target = c.get("stage"), c["kind"], c["target"]
    where = f"{stage}: " if stage else ""
    if kind == "failure_rate":
        text = (
            f"failure rate: {c['failed']} of the {target} failed "
            f"({c['new']:.0%}, max {c['old']:.0%})"
        )
        return [Reason(c["severity"], text, kind, target, stage)]
    moved = {k: m for k, m in (c.get("metrics") or {}).items() if m.get("delta") != 0}
    if moved:
        out = []
        for k, m in moved.items():
            parts = [f"{m['delta']:+g}"] if m.get("delta") is not None else []
            parts += [f"rule {m['rule']}"] if m.get("rule") else []
            text = f"{where}metric {target}:{k} {_fmt(m['old'])} -> {_fmt(m['new'])}"
            text += f" ({'; '.join(parts)})" if parts else ""
            out.append(
                Reason(m.get("severity", c["severity"]), text, "metric", f"{target}:{k}", stage)
            )
        return out
    if c.get("note") in ("stage added", "stage removed"):
        detail = c["note"]
    elif kind == "code" and "lines" in c:
        detail = f"{c['lines']} line{'' if c['lines'] == 1 else 's'} changed"
    elif kind in ("params", "env", "seed", "image", "cmd"):
        detail = f"{_fmt(c['old'])} -> {_fmt(c['new'])}"
    elif c["old"] is None or c["new"] is None:
        detail = "added" if c["old"] is None else "removed"
    else:
        detail = c.get("note") or "changed"
    text = f"{where}{'data ' if not stage and kind == 'data' else kind + ' '}{target}: {detail}"
    return [Reason(c["severity"], text, kind, target, stage)]


def _stale_reasons(rows: list[dict[str, Any]]) -> list[Reason]:
    out = []
    for row in rows:
        name = row.get("name") or row.get("path") or "?"
        why = "; ".join(f"{r['kind']}: {r['target']}" for r in row.get("reasons") or [])
        label = name if "name" in row else f"data {name}"
        out.append(Reason("stale", f"{label}: stale ({why})", "stale", name, row.get("name")))
    return out


def _fire_alerts(project: Project, verdict: Verdict, changes: list[dict[str, Any]]) -> list:
    """Fire the project's `[[alerts]]` with the verdict, through `repro.alerts.fire` when that
    module offers it (the event from its `alert_event`, source `check`). A failed delivery is
    one `warning:` line on stderr (and queued by repro.alerts); nothing here changes the
    verdict."""
    from repro import alerts

    fire = getattr(alerts, "fire", None)
    if fire is None or verdict.verdict == "ok" or not project.config.get("alerts"):
        return []
    snapshot, run_id = _current_state(project)
    previous = verdict.changes.get("from")
    texts = [r.text for r in verdict.reasons]
    try:
        make = getattr(alerts, "alert_event", None)
        if make is not None:
            event = make(verdict.verdict, snapshot, previous, run_id, changes, texts, "check")
        else:
            event = {
                "event": "alert",
                "v": 1,
                "severity": verdict.verdict,
                "snapshot": snapshot,
                "previous": previous,
                "run_id": run_id,
                "changes": changes,
                "reasons": texts,
                "source": "check",
            }
        deliveries = list(fire(project.root, project.config, event) or [])
        for line in getattr(alerts, "warnings", lambda d: [])(deliveries):
            sys.stderr.write(line + "\n")
        return deliveries
    except Exception as exc:  # an alert sink is outside repro: report it, never fail on it
        sys.stderr.write(f"warning: alerts: {type(exc).__name__}: {exc}\n")
        return []


def _current_state(project: Project) -> tuple[str | None, str | None]:
    """(sig, run id) of the state repro.lock records, when a stored snapshot holds it."""
    try:
        from repro.lockfile import load_lock
        from repro.records import list_records
        from repro.refs import matching_snapshot

        sig = matching_snapshot(project, load_lock(project.lock_path))
        if sig is None:
            return None, None
        run = next(
            (r.run_id for r in list_records(project.cache.backend) if r.snapshot == sig), None
        )
        return sig, run
    except Exception:
        return None, None


def check(
    project: Project,
    against: str | None = None,
    fail_on: str | None = None,
    probes: Probes = CACHED,
    alerts: bool = True,
) -> Verdict:
    """Judge the workspace against `against` (default: `default_baseline`): the verdict, its
    reasons worst first, the stale stages, and the diff. Reads only, apart from the alerts."""
    from repro.diff import diff
    from repro.pipeline.status import report

    if fail_on is not None and fail_on not in FAIL_ON:
        raise UsageError(f"--fail-on must be 'major' or 'minor', not '{fail_on}'.")
    baseline = against or default_baseline(project)
    status = report(project, None, probes).to_dict()
    stale = [row for row in [*status["stages"], *status["data"]] if row["state"] == "stale"]
    doc = diff(project, baseline, None, probes)
    changes = flat_changes(doc["stages"], doc["data"]) + failure_findings(project)
    reasons = [r for c in changes for r in _change_reasons(c)] + _stale_reasons(stale)
    reasons.sort(key=lambda r: _ORDER.get(r.severity, 3))  # stable: diff order within a rank
    severity = worst(c["severity"] for c in changes)
    verdict = Verdict(severity or "ok", baseline, reasons, stale, doc, fail_on)
    if alerts:
        verdict.alerts = _fire_alerts(project, verdict, changes)
    return verdict


__all__ = ["FAIL_ON", "RANK", "Reason", "Verdict", "check", "default_baseline"]
