"""The change policy: what changed between two states, and how much each change matters.

`repro diff` (repro/diff.py) resolves the two states; this module compares them and gives each
change a severity from `.repro/config.toml`, so the alert observer and `repro check` judge a
change exactly as `diff` shows it:

- `[diff.severity]`: change kind -> major|minor (defaults below);
- `[diff] metric_threshold`: a metric moving more than this is major (no rule of its own);
- `[diff.metrics]`: per metric and direction, `accuracy = { drop = 0.02 }` (absolute) or
  `{ drop = "2%" }` (relative to the old value), `loss = { rise = 0.1 }`; the key is the flat
  metric name as diff shows it, or `file:key`; beyond the rule is major, within it minor;
- `[diff.failure_rate] runs = N, max = R`: over the last N runs, a failure rate above R is a
  major finding (it is about the history, so `check` and `assess` report it, not `diff`);
- `[diff.code] major_lines = N`: a code dependency whose change between the commits the two
  states were recorded at spans more than N lines (git `diff --numstat`) is major, else minor.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from repro.config import flatten_metric_rules, metric_limit
from repro.errors import ReproError
from repro.pipeline.envfp import env_changes
from repro.pipeline.signature import dep_kind
from repro.project import Project
from repro.snapshots import Snapshot

DEFAULT_SEVERITY = {
    "code": "major",
    "cmd": "major",
    "image": "major",
    "env": "major",
    "params": "minor",
    "data": "minor",
    "seed": "minor",
    "outs": "minor",
    "upstream": "minor",
}
DEFAULT_METRIC_THRESHOLD = 0.01
RANK = {"major": 2, "minor": 1}


@dataclass
class Policy:
    """The severity policy of one project, read once per comparison."""

    severity: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SEVERITY))
    metric_threshold: float = DEFAULT_METRIC_THRESHOLD
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # flat name -> rule
    failure_runs: int | None = None
    failure_max: float | None = None
    code_major_lines: int | None = None


def load_policy(project: Project) -> Policy:
    """The policy in the project's config (already validated by repro/config.py)."""
    cfg = project.config.get("diff") or {}
    fr = cfg.get("failure_rate") or {}
    code = cfg.get("code") or {}
    return Policy(
        severity={**DEFAULT_SEVERITY, **(cfg.get("severity") or {})},
        metric_threshold=float(cfg.get("metric_threshold", DEFAULT_METRIC_THRESHOLD)),
        metrics=flatten_metric_rules(cfg.get("metrics") or {}),
        failure_runs=fr.get("runs"),
        failure_max=fr.get("max"),
        code_major_lines=code.get("major_lines"),
    )


def worst(severities: Any) -> str | None:
    """The worst of some severities ('major' > 'minor'), or None when there are none."""
    best = None
    for s in severities:
        if s in RANK and (best is None or RANK[s] > RANK[best]):
            best = s
    return best


def meets(severity: str | None, fail_on: str | None) -> bool:
    """Whether `severity` is `fail_on` or worse (`minor` means minor or worse)."""
    return bool(severity and fail_on and RANK.get(severity, 0) >= RANK[fail_on])


# -- metrics ----------------------------------------------------------------------------------
def _rule_text(direction: str, limit: Any) -> str:
    return f"{direction} {limit}"


def metric_severity(
    policy: Policy, path: str, key: str, old: Any, new: Any
) -> tuple[str, str | None]:
    """(severity, the rule that decided it) of one metric's move from `old` to `new`."""
    rule = policy.metrics.get(f"{path}:{key}", policy.metrics.get(key))
    numeric = isinstance(old, int | float) and isinstance(new, int | float)
    if not numeric:
        return "major", None  # a metric appeared, vanished or stopped being a number
    delta = new - old
    if rule is None:
        return ("major" if abs(delta) > policy.metric_threshold else "minor"), None
    direction = "drop" if delta < 0 else "rise"
    if direction not in rule or delta == 0:
        return "minor", None  # a move the rule does not guard against (an improvement)
    amount, relative = metric_limit(rule[direction]) or (0.0, False)
    limit = amount * abs(old) if relative else amount
    beyond = abs(delta) > limit + 1e-12 * max(1.0, abs(old))
    return ("major" if beyond else "minor"), _rule_text(direction, rule[direction])


# -- code lines from git ----------------------------------------------------------------------
def _git(project: Project, *args: str) -> str | None:
    try:
        p = subprocess.run(
            ["git", *args], cwd=project.root, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def git_commit(project: Project, rev: str) -> str | None:
    """The commit `rev` names in the project's git repository, or None."""
    if not rev or rev.startswith("-"):
        return None
    out = _git(project, "rev-parse", "--verify", "--quiet", "--end-of-options", rev + "^{commit}")
    return out.strip() if out and out.strip() else None


def snapshot_commit(project: Project, sig: str) -> str | None:
    """The commit a snapshot was recorded at: the `git_commit` of the oldest run record that
    made it (later runs that only restored it may sit on later commits)."""
    from repro.records import list_records

    found = None
    for rec in list_records(project.cache.backend):  # newest first
        if rec.snapshot == sig and rec.git_commit:
            found = rec.git_commit
    return found


Commits = tuple[str | None, str | None]


class CodeLines:
    """Lines changed per path between two commits (or a commit and the working tree), from one
    `git diff --numstat` per pair, asked only when a code change needs it. `commits` may be a
    function giving them, so a diff without code changes asks git nothing."""

    def __init__(
        self, project: Project, commits: Commits | Callable[[], Commits], b_worktree: bool
    ) -> None:
        self.project, self.commits, self.b_worktree = project, commits, b_worktree
        self._counts: dict[str, int | None] | None = None

    def _load(self) -> dict[str, int | None]:
        a, b = self.commits() if callable(self.commits) else self.commits
        if a is None or (b is None and not self.b_worktree):
            return {"": None}  # unknown: every path falls back to its kind
        args = ["diff", "--numstat", "--no-renames", "--relative", a]
        if not self.b_worktree and b:
            args.append(b)
        out = _git(self.project, *args, "--")
        if out is None:
            return {"": None}
        counts: dict[str, int | None] = {}
        for line in out.splitlines():
            parts = line.split("\t", 2)
            if len(parts) != 3:
                continue
            added, removed, path = parts
            counts[path] = (
                int(added) + int(removed) if added.isdigit() and removed.isdigit() else None
            )  # a binary file has no line count
        return counts

    def lines(self, path: str) -> int | None:
        """Lines added plus removed in `path`; 0 when git sees no change; None when unknown."""
        if self._counts is None:
            self._counts = self._load()
        if "" in self._counts:
            return None
        return self._counts.get(path, 0)


# -- the comparison -----------------------------------------------------------------------------
def _tree_changes(project: Project, old: dict | None, new: dict | None) -> dict[str, Any]:
    """For folders: which files were added, removed and changed (when both trees are cached)."""
    if not (old and new and old.get("isdir") and new.get("isdir")):
        return {}
    try:
        a = project.cache.get_tree(old["hash"]).as_dict()
        b = project.cache.get_tree(new["hash"]).as_dict()
    except ReproError:
        return {}
    return {
        "added": sorted(set(b) - set(a)),
        "removed": sorted(set(a) - set(b)),
        "changed": sorted(p for p in set(a) & set(b) if a[p].hash != b[p].hash),
    }


def _details(
    project: Project, path: str, old: dict | None, new: dict | None, a: Snapshot, b: Snapshot
) -> dict[str, Any]:
    """What more there is to say of a changed path: files inside a folder, table schemas."""
    extra: dict[str, Any] = {}
    tc = _tree_changes(project, old, new)
    if tc:
        extra["files"] = tc
    note = _schema_note(path, a, b)
    if note:
        extra["note"] = note
    return extra


def _file_value(d: dict | None) -> dict | None:
    if d is None:
        return None
    v = {"hash": d["hash"], "size": d.get("size")}
    if d.get("isdir"):
        v["nfiles"] = d.get("nfiles")
    return v


def _schema_note(path: str, a: Snapshot, b: Snapshot) -> str | None:
    sa = {k: v for k, v in a.schemas.items() if k == path or k.startswith(path + "/")}
    sb = {k: v for k, v in b.schemas.items() if k == path or k.startswith(path + "/")}
    if not sa and not sb:
        return None
    return "schema changed" if sa != sb else "values changed"


def _metric_values(project: Project, snap: Snapshot, path: str, is_workspace: bool) -> dict:
    from repro.records import flat_metrics

    if is_workspace:
        return flat_metrics(project.abs(path))
    d = snap.outputs().get(path)
    if not d:
        return {}
    import tempfile

    try:
        data = project.cache.get_bytes(d["hash"])
    except ReproError:
        return {}
    suffix = os.path.splitext(path)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=project.tmp_dir, delete=False) as f:
        f.write(data)
    try:
        return flat_metrics(f.name)
    finally:
        os.unlink(f.name)


def _metric_change(
    project: Project, policy: Policy, path: str, a: Snapshot, b: Snapshot, b_is_workspace: bool
) -> tuple[str, dict[str, Any]]:
    """(severity, per-metric old/new/delta) of a changed metrics file: its worst metric."""
    ma = _metric_values(project, a, path, False)
    mb = _metric_values(project, b, path, b_is_workspace)
    metrics: dict[str, Any] = {}
    severity = policy.severity.get("outs", "minor")
    for k in sorted(set(ma) | set(mb)):
        old, new = ma.get(k), mb.get(k)
        numeric = isinstance(old, int | float) and isinstance(new, int | float)
        delta = new - old if numeric else None
        metrics[k] = {"old": old, "new": new, "delta": delta}
        if delta == 0:
            continue
        sev, rule = metric_severity(policy, path, k, old, new)
        metrics[k]["severity"] = sev
        if rule:
            metrics[k]["rule"] = rule
        severity = worst([severity, sev]) or severity
    return severity, metrics


def _code_severity(policy: Policy, lines: int | None, default: str) -> str:
    if policy.code_major_lines is None or lines is None:
        return default
    return "major" if lines > policy.code_major_lines else "minor"


def diff_snapshots(
    project: Project,
    a: Snapshot,
    b: Snapshot,
    b_is_workspace: bool = False,
    commits: Commits | Callable[[], Commits] = (None, None),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(stages, data): every change from `a` to `b` with its severity. `commits` are the git
    commits the two states were recorded at (for the line counts of code changes); with
    `b_is_workspace` the second is the working tree."""
    policy = load_policy(project)
    sev = policy.severity
    code_lines = CodeLines(project, commits, b_is_workspace)

    def change(kind: str, target: str, old: Any, new: Any, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "target": target,
            "old": old,
            "new": new,
            "severity": extra.pop("severity", sev.get(kind, "minor")),
            **extra,
        }

    outputs_a, outputs_b = a.outputs(), b.outputs()
    produced = set(outputs_a) | set(outputs_b)
    stages_out = []
    for name in sorted(
        set(a.stages) | set(b.stages),
        key=lambda n: (list(b.stages).index(n) if n in b.stages else 10**6, n),
    ):
        ea, eb = a.stages.get(name), b.stages.get(name)
        changes: list[dict[str, Any]] = []
        if ea is None or eb is None:
            changes.append(
                change(
                    "cmd",
                    name,
                    ea and ea.get("cmd"),
                    eb and eb.get("cmd"),
                    note="stage added" if ea is None else "stage removed",
                )
            )
            stages_out.append({"name": name, "changes": changes})
            continue
        if ea.get("cmd") != eb.get("cmd") or ea.get("wdir") != eb.get("wdir"):
            changes.append(change("cmd", name, ea.get("cmd"), eb.get("cmd")))
        da, db = ea.get("deps") or {}, eb.get("deps") or {}
        for path in sorted(set(da) | set(db)):
            if (da.get(path) or {}).get("hash") == (db.get(path) or {}).get("hash"):
                continue
            kind = (
                "upstream"
                if path in produced or any(path.startswith(o + "/") for o in produced)
                else dep_kind(path)
            )
            extra = _details(project, path, da.get(path), db.get(path), a, b)
            if kind == "code":
                lines = code_lines.lines(path)
                if lines is not None:
                    extra["lines"] = lines
                extra["severity"] = _code_severity(policy, lines, sev.get("code", "major"))
            changes.append(
                change(kind, path, _file_value(da.get(path)), _file_value(db.get(path)), **extra)
            )
        pa, pb = ea.get("params") or {}, eb.get("params") or {}
        for key in sorted(set(pa) | set(pb)):
            if pa.get(key) != pb.get(key):
                changes.append(change("params", key, pa.get(key), pb.get(key)))
        va, vb = ea.get("env") or {}, eb.get("env") or {}
        for key in sorted(set(va) | set(vb)):
            if va.get(key) != vb.get(key):
                changes.append(change("env", key, va.get(key), vb.get(key)))
        for target, old, new in env_changes(ea.get("environment"), eb.get("environment")):
            changes.append(change("env", target, old, new))
        if ea.get("image") != eb.get("image"):
            changes.append(change("image", name, ea.get("image"), eb.get("image")))
        if ea.get("seed") != eb.get("seed"):
            changes.append(change("seed", name, ea.get("seed"), eb.get("seed")))
        oa, ob = ea.get("outs") or {}, eb.get("outs") or {}
        for path in sorted(set(oa) | set(ob)):
            if (oa.get(path) or {}).get("hash") == (ob.get(path) or {}).get("hash"):
                continue
            extra = {}
            is_metric = (ob.get(path) or oa.get(path) or {}).get("metric")
            severity = sev.get("outs", "minor")
            if is_metric:
                severity, extra["metrics"] = _metric_change(
                    project, policy, path, a, b, b_is_workspace
                )
            extra.update(_details(project, path, oa.get(path), ob.get(path), a, b))
            changes.append(
                change(
                    "outs",
                    path,
                    _file_value(oa.get(path)),
                    _file_value(ob.get(path)),
                    severity=severity,
                    **extra,
                )
            )
        if changes:
            stages_out.append({"name": name, "changes": changes})
    data_out = []
    for path in sorted(set(a.data) | set(b.data)):
        old, new = a.data.get(path), b.data.get(path)
        if (old or {}).get("hash") != (new or {}).get("hash"):
            extra = _details(project, path, old, new, a, b)
            data_out.append(change("data", path, _file_value(old), _file_value(new), **extra))
    return stages_out, data_out


# -- the history: failure rate ----------------------------------------------------------------
def failure_findings(project: Project, policy: Policy | None = None) -> list[dict[str, Any]]:
    """A major finding when more than `[diff.failure_rate] max` of the last `runs` pipeline
    runs failed (fewer runs recorded: over those there are); [] otherwise or without the rule."""
    from repro.records import list_records

    policy = policy or load_policy(project)
    if policy.failure_runs is None or policy.failure_max is None:
        return []
    runs = [r for r in list_records(project.cache.backend) if r.kind == "run"]
    last = runs[: policy.failure_runs]
    if not last:
        return []
    failed = sum(1 for r in last if r.status != "ok")
    rate = failed / len(last)
    if rate <= policy.failure_max:
        return []
    return [
        {
            "kind": "failure_rate",
            "target": f"last {len(last)} runs",
            "old": policy.failure_max,
            "new": round(rate, 4),
            "severity": "major",
            "failed": failed,
            "runs": len(last),
        }
    ]


def flat_changes(stages: list[dict[str, Any]], data: list[dict[str, Any]]) -> list[dict]:
    """A diff's changes as one list, each stage change naming its stage (`"stage"`)."""
    out = [{"stage": st["name"], **c} for st in stages for c in st["changes"]]
    return out + list(data)


def assess(
    project: Project,
    a: Snapshot,
    b: Snapshot,
    *,
    b_is_workspace: bool = False,
    commits: Commits | Callable[[], Commits] = (None, None),
    failures: bool = True,
) -> tuple[str | None, list[dict[str, Any]]]:
    """(worst severity or None, changes) of going from state `a` to state `b`, under the
    project's policy: what an alert reports. The changes are those of `diff --json`, flat, each
    stage change naming its `"stage"`, followed (with `failures`) by the failure-rate finding
    of `[diff.failure_rate]` when it is met."""
    stages, data = diff_snapshots(project, a, b, b_is_workspace, commits)
    changes = flat_changes(stages, data)
    if failures:
        changes += failure_findings(project)
    return worst(c["severity"] for c in changes), changes


def state_commit(project: Project, ref: str, name: str) -> str | None:
    """The git commit the state `ref` (resolved to `name` by repro.refs.resolve_state) was
    recorded at, or None: a git revision is its own commit; `repro.lock` is HEAD while the
    lock is as HEAD has it; a snapshot (or a tag) is the commit of the run that made it."""
    from repro.project import LOCK_FILE
    from repro.refs import LOCK_REF, tag_sig
    from repro.safety import is_hash

    try:  # a tag name wins over a git revision of the same name, as everywhere
        is_tag = ref != LOCK_REF and tag_sig(project, ref) is not None
    except ReproError:
        is_tag = False
    if is_tag:
        pass
    elif ref == LOCK_REF:
        head = git_commit(project, "HEAD")
        tracked = _git(project, "ls-files", "--error-unmatch", "--", LOCK_FILE) is not None
        if head and tracked and _git(project, "diff", "--quiet", "HEAD", "--", LOCK_FILE) == "":
            return head
    elif not (is_hash(name) and name.startswith(ref.lower())):
        commit = git_commit(project, ref)
        if commit:
            return commit
    return snapshot_commit(project, name) if is_hash(name) else None
