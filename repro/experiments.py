"""Experiments: the pipeline run with params overridden, away from the workspace.

`repro exp run -S train.lr=0.1` must not touch the user's params files or git: the project's
tracked files are copied into `.repro/tmp/exps/<name>`, the params files there rewritten, and
the pipeline run there by a `Project` whose cache (objects, run cache, snapshots, run records)
is the project's own. Outputs the run cache already knows are linked back from the cache, not
run again, so a sweep reruns only the stages that read the swept param. What remains is a
snapshot and an experiment record (`exps/<name>` in the cache) that `exp show` lists, `exp
apply` checks out, and `exp push/pull` carry through the remote.
"""

from __future__ import annotations

import datetime
import itertools
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from repro.enums import Outcome
from repro.errors import NotFoundError, ReproError, UsageError
from repro.project import Project
from repro.store.layout import EXP_FORMAT, EXPS, check_format, exp_key

if TYPE_CHECKING:
    from repro.store.objects import ObjectStore
    from repro.workspace import CheckoutReport

DEFAULT_PARAMS = "params.yaml"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_RANGE = re.compile(r"^range\((.*)\)$")


# -- records ----------------------------------------------------------------------------------
@dataclass
class Experiment:
    """One experiment: what was overridden, on top of what, and what came of it."""

    name: str
    overrides: dict[str, Any]  # "file:key" -> value
    state: str = QUEUED
    snapshot: str | None = None
    base_commit: str | None = None
    base_lock: str | None = None  # hash of the repro.lock it started from
    time: str = field(default_factory=lambda: _now())
    message: str = ""

    def record(self) -> dict[str, Any]:
        return {
            "format": EXP_FORMAT,
            "name": self.name,
            "overrides": self.overrides,
            "state": self.state,
            "snapshot": self.snapshot,
            "base_commit": self.base_commit,
            "base_lock": self.base_lock,
            "time": self.time,
            "message": self.message,
        }

    @classmethod
    def decode(cls, data: bytes, source: str) -> Experiment:
        from repro.canonical import unpackb

        try:
            d = unpackb(data)
        except Exception:
            raise ReproError(f"{source}: not an experiment record (damaged).") from None
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise ReproError(f"{source}: not an experiment record (damaged).")
        check_format(d, EXP_FORMAT, source)
        return cls(
            name=d["name"],
            overrides=dict(d.get("overrides") or {}),
            state=str(d.get("state") or QUEUED),
            snapshot=d.get("snapshot"),
            base_commit=d.get("base_commit"),
            base_lock=d.get("base_lock"),
            time=str(d.get("time") or ""),
            message=str(d.get("message") or ""),
        )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def save(project: Project, exp: Experiment) -> None:
    from repro.canonical import packb

    project.cache.backend.write_bytes(exp_key(exp.name), packb(exp.record()))


def load(project: Project, name: str) -> Experiment:
    try:
        data = project.cache.backend.read_bytes(exp_key(check_name(name)))
    except FileNotFoundError:
        raise NotFoundError(
            f"no experiment named '{name}' ('repro exp show' lists them)."
        ) from None
    return Experiment.decode(data, f"experiment '{name}'")


def list_all(project: Project) -> list[Experiment]:
    """Every experiment, oldest first (then by name)."""
    out = []
    for key in project.cache.backend.list(EXPS):
        name = key.partition("/")[2]
        if _NAME.match(name):
            try:
                out.append(load(project, name))
            except ReproError:
                continue  # a damaged record: fsck's business, not show's
    return sorted(out, key=lambda e: (e.time, e.name))


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(
            f"experiment name '{name}': use letters, digits, '.', '_' and '-' "
            "(at most 100, starting with a letter or digit)."
        )
    return name


# -- -S overrides -----------------------------------------------------------------------------
def parse_set(project: Project, text: str) -> tuple[str, list[Any]]:
    """`[file:]key=value` -> ("file:key", values). A sweep (`range(a,b,step)` or `a,b,c`) gives
    several values; the key must exist in the params file (a typo never runs an experiment)."""
    from repro.pipeline.params import _MISSING, load_params_file, lookup

    left, eq, raw = text.partition("=")
    left = left.strip()
    if not eq or not left:
        raise UsageError(f"-S '{text}': write KEY=VALUE (e.g. -S train.lr=0.1).")
    file, colon, key = left.rpartition(":")
    file = file if colon else DEFAULT_PARAMS
    if not key:
        raise UsageError(f"-S '{text}': the key is empty.")
    try:
        doc = load_params_file(project, file)
    except FileNotFoundError:
        raise UsageError(f"-S '{text}': params file '{file}' does not exist.") from None
    if lookup(doc, key) is _MISSING:
        raise UsageError(f"-S '{text}': '{key}' is not a key of {file}.")
    return f"{file}:{key}", _values(text, raw.strip())


def _scalar(raw: str) -> Any:
    import yaml

    try:
        v = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        return raw
    return v if v is None or isinstance(v, str | int | float | bool) else raw


def _values(text: str, raw: str) -> list[Any]:
    m = _RANGE.match(raw)
    if m:
        return _range(text, m.group(1))
    if "," in raw and not raw.startswith(("[", "{", '"', "'")):
        return [_scalar(p.strip()) for p in raw.split(",")]
    return [_scalar(raw)]


def _range(text: str, args: str) -> list[Any]:
    parts = [_scalar(p.strip()) for p in args.split(",")]
    if not 1 <= len(parts) <= 3 or not all(
        isinstance(p, int | float) and not isinstance(p, bool) for p in parts
    ):
        raise UsageError(f"-S '{text}': write range(START,STOP,STEP) with numbers.")
    if len(parts) == 1:
        parts = [0, parts[0]]
    start, stop = parts[0], parts[1]
    step = parts[2] if len(parts) == 3 else 1
    if step == 0 or (stop - start) / step <= 0:
        raise UsageError(f"-S '{text}': the range is empty.")
    n = int(round((stop - start) / step, 9) + 0.999999999)
    if n > 10000:
        raise UsageError(f"-S '{text}': the range has {n} values (at most 10000).")
    if all(isinstance(p, int) for p in (start, stop, step)):
        return list(range(start, stop, step))
    return [round(start + i * step, 10) for i in range(n)]


def grid(project: Project, sets: list[str]) -> list[dict[str, Any]]:
    """One overrides dict per combination of the -S values (one dict when nothing sweeps)."""
    parsed: dict[str, list[Any]] = {}
    for text in sets:
        pid, values = parse_set(project, text)
        parsed[pid] = values
    keys = list(parsed)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*parsed.values())]


# -- the isolated workspace -------------------------------------------------------------------
class ExpProject(Project):
    """The project as seen from an experiment's temporary workspace: files from `root`, the
    cache (objects, run cache, snapshots, records) and config from the main project."""

    def __init__(self, root: str, main: Project) -> None:
        self.main = main
        os.makedirs(os.path.join(root, ".repro", "tmp"), exist_ok=True)
        super().__init__(root)

    @cached_property
    def config(self) -> dict[str, Any]:
        import copy

        return copy.deepcopy(self.main.config)

    @cached_property
    def cache(self) -> ObjectStore:
        from repro.store.backend import LocalBackend
        from repro.store.links import default_links
        from repro.store.objects import ObjectStore

        links = tuple(self.config.get("cache", {}).get("link", default_links()))
        backend = LocalBackend(os.path.join(self.main.dot, "cache"), tmp=self.tmp_dir)
        return ObjectStore(backend, self.state, links, name="local cache")


def workspace_dir(project: Project, name: str) -> str:
    return os.path.join(project.tmp_dir, "exps", name)


def _git(project: Project, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", project.root, *args], capture_output=True, check=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode("utf-8", "surrogateescape")


def _project_files(project: Project) -> list[str]:
    """The files an experiment starts from: git's tracked and unignored files (the user's
    uncommitted edits included); outside git, every file but repro's own and the outputs."""
    listed = _git(project, "ls-files", "-z", "-c", "-o", "--exclude-standard")
    if listed is not None:
        files = [f for f in listed.split("\0") if f]
    else:
        files = []
        for d, dirs, names in os.walk(project.root):
            dirs[:] = [x for x in dirs if x not in (".repro", ".git")]
            for n in names:
                files.append(os.path.relpath(os.path.join(d, n), project.root).replace(os.sep, "/"))
    from repro.lockfile import load_lock

    lock = load_lock(project.lock_path)
    made = set(lock.data)
    for entry in lock.stages.values():
        made |= set((entry.get("outs") or {}).keys())

    def keep(f: str) -> bool:
        if f == ".repro" or f.startswith(".repro/"):
            return False
        return not any(f == m or f.startswith(m + "/") for m in made)

    return sorted(f for f in set(files) if keep(f) and os.path.lexists(project.abs(f)))


def make_workspace(project: Project, exp: Experiment) -> ExpProject:
    """A fresh temporary workspace for `exp`: the project's files, its params overridden.
    Outputs and tracked data are not copied: the run links them from the cache."""
    ws = workspace_dir(project, exp.name)
    shutil.rmtree(ws, ignore_errors=True)
    os.makedirs(ws)
    for rel in _project_files(project):
        src, dst = project.abs(rel), os.path.join(ws, *rel.split("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isfile(src):
            shutil.copy2(src, dst)
    by_file: dict[str, dict[str, Any]] = {}
    for pid, value in exp.overrides.items():
        file, _, key = pid.rpartition(":")
        by_file.setdefault(file, {})[key] = value
    for file, values in by_file.items():
        write_params(os.path.join(ws, *file.split("/")), values)
    return ExpProject(ws, project)


def write_params(path: str, values: dict[str, Any]) -> None:
    """Set dotted keys in a YAML, JSON or TOML params file, keeping the rest of it (YAML
    comments and order included)."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".json":
        import json

        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        _set_all(doc, values)
        text = json.dumps(doc, indent=2) + "\n"
    elif ext == ".toml":
        import tomlkit

        with open(path, encoding="utf-8") as f:
            doc = tomlkit.parse(f.read())
        _set_all(doc, values)
        text = tomlkit.dumps(doc)
    else:
        import io

        from ruamel.yaml import YAML

        yaml = YAML()
        yaml.preserve_quotes = True
        with open(path, encoding="utf-8") as f:
            doc = yaml.load(f)
        _set_all(doc, values)
        buf = io.StringIO()
        yaml.dump(doc, buf)
        text = buf.getvalue()
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _set_all(doc: Any, values: dict[str, Any]) -> None:
    for dotted, value in values.items():
        parts = dotted.split(".")
        cur = doc
        for part in parts[:-1]:
            cur = cur[int(part)] if isinstance(cur, list) else cur[part]
        last = parts[-1]
        if isinstance(cur, list):
            cur[int(last)] = value
        else:
            cur[last] = value


# -- running ----------------------------------------------------------------------------------
def new_experiments(project: Project, sets: list[str], name: str | None = None) -> list[Experiment]:
    """The experiments `exp run -S ...` asks for (several for a sweep), checked and named, not
    yet stored: bad input stores nothing."""
    if name is not None:
        check_name(name)
    combos = grid(project, sets)
    taken = {e.name for e in list_all(project)}
    if name is not None:
        names = [name] if len(combos) == 1 else [f"{name}-{i + 1}" for i in range(len(combos))]
    else:
        names = [f"exp-{secrets.token_hex(3)}" for _ in combos]
    for n in names:
        if n in taken:
            raise UsageError(
                f"an experiment named '{n}' exists; choose another --name or "
                f"'repro exp remove {n}'."
            )
    commit = (_git(project, "rev-parse", "HEAD") or "").strip() or None
    base = _lock_hash(project)
    return [
        Experiment(n, overrides, base_commit=commit, base_lock=base)
        for n, overrides in zip(names, combos, strict=True)
    ]


def _lock_hash(project: Project) -> str | None:
    from repro.canonical import hash_bytes

    try:
        with open(project.lock_path, "rb") as f:
            return hash_bytes(f.read())
    except OSError:
        return None


def run_one(
    project: Project, exp: Experiment, use_remote: bool = True, jobs: int = 1
) -> Experiment:
    """Run `exp` in its own temporary workspace (`jobs` stages at once) and store the outcome
    (done or failed). The workspace is removed afterwards, kept when the run failed (to look
    at). An interrupted run is recorded as failed, never left `running`."""
    from repro.pipeline.runner import run as run_pipeline

    exp.state, exp.message = RUNNING, ""
    save(project, exp)
    ws: ExpProject | None = None
    try:
        ws = make_workspace(project, exp)
        result = run_pipeline(ws, None, use_remote=use_remote, jobs=jobs)
    except ReproError as exc:
        return _failed(project, exp, exc.message)
    except KeyboardInterrupt:
        _failed(project, exp, "interrupted")
        raise
    except Exception as exc:  # recorded, so the experiment is not `running` for ever
        return _failed(project, exp, f"unexpected {type(exc).__name__}: {exc}")
    finally:
        if ws is not None and "state" in ws.__dict__:
            ws.state.close()
    exp.snapshot = result.snapshot
    if result.ok:
        exp.state = DONE
        shutil.rmtree(workspace_dir(project, exp.name), ignore_errors=True)
    else:
        failed = [s for s in result.stages if s.status == Outcome.FAILED]
        exp.state = FAILED
        exp.message = (failed[0].message if failed else "the run failed") + (
            f" (its workspace is kept in .repro/tmp/exps/{exp.name} until 'repro exp remove')"
        )
    save(project, exp)
    return exp


def _failed(project: Project, exp: Experiment, message: str) -> Experiment:
    exp.state, exp.message = FAILED, message
    save(project, exp)
    return exp


def _run_in_child(root: str, name: str, use_remote: bool) -> dict[str, Any]:
    """The worker of `run_queued -j N`: a process of its own, as a `repro run` would be."""
    project = Project(root)
    try:
        exp = run_one(project, load(project, name), use_remote)
    finally:
        if "state" in project.__dict__:
            project.state.close()
    return exp.record()


def run_queued(
    project: Project, jobs: int = 1, names: list[str] | None = None, use_remote: bool = True
) -> list[Experiment]:
    """Run the queued experiments (or `names`), `jobs` at a time, each in its own process and
    temporary workspace; they share the cache, so each reuses what another has run."""
    if jobs < 1:
        raise UsageError("-j/--jobs must be at least 1.")
    todo = (
        [load(project, n) for n in names]
        if names
        else [e for e in list_all(project) if e.state == QUEUED]
    )
    if jobs == 1 or len(todo) <= 1:
        return [run_one(project, e, use_remote) for e in todo]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx) as pool:
        futures = [pool.submit(_run_in_child, project.root, e.name, use_remote) for e in todo]
        records = [f.result() for f in futures]
    from repro.canonical import packb

    return [Experiment.decode(packb(r), "experiment") for r in records]


# -- reading them back ------------------------------------------------------------------------
def resolve_snapshot(project: Project, name: str) -> str:
    """The snapshot of a finished experiment, for `exp diff` and `exp apply`."""
    exp = load(project, name)
    if not exp.snapshot:
        raise UsageError(f"experiment '{name}' has no result yet (state: {exp.state}).")
    return exp.snapshot


def metrics_of(project: Project, exp: Experiment, seen: dict | None = None) -> dict[str, Any]:
    if not exp.snapshot:
        return {}
    from repro.metrics import snapshot_metrics
    from repro.snapshots import load_snapshot

    try:
        snap = load_snapshot(project.cache.backend, exp.snapshot)
    except ReproError:
        return {}
    return snapshot_metrics(project, snap, seen)


def show(project: Project) -> list[dict[str, Any]]:
    """`exp show --json`: `[{"name", "snapshot", "params", "metrics", "state"}]`, params being
    the overridden `file:key` values and metrics `{file: {metric: value}}`."""
    seen: dict = {}
    return [
        {
            "name": e.name,
            "snapshot": e.snapshot,
            "params": dict(e.overrides),
            "metrics": metrics_of(project, e, seen),
            "state": e.state,
            "time": e.time,
            "message": e.message,
        }
        for e in list_all(project)
    ]


def diff(project: Project, a: str, b: str) -> dict[str, Any]:
    """`exp diff A B --json`: `{"from", "to", "params": ..., "metrics": ...}` as `params diff`
    and `metrics diff` give them for the two experiments' snapshots."""
    from repro.metrics import diff as metrics_diff
    from repro.metrics import params_diff

    sa, sb = resolve_snapshot(project, a), resolve_snapshot(project, b)
    params = params_diff(project, sa, sb)["params"]
    metrics = metrics_diff(project, sa, sb)["metrics"]
    return {"from": a, "to": b, "params": params, "metrics": metrics}


def apply(project: Project, name: str, force: bool = False, wait: float = 0.0) -> CheckoutReport:
    """Bring an experiment into the workspace: its params files, outputs and repro.lock, with
    checkout's safety (workspace content not in the cache is stored before it is replaced)."""
    from repro.snapshots import checkout_snapshot

    return checkout_snapshot(project, resolve_snapshot(project, name), force=force, wait=wait)


def remove(project: Project, names: list[str]) -> list[str]:
    """Forget experiments (every name is checked first: an unknown one removes nothing). Their
    snapshots stay until gc."""
    for n in names:
        load(project, n)
    for n in names:
        project.cache.backend.delete(exp_key(n))
        shutil.rmtree(workspace_dir(project, n), ignore_errors=True)
    return names


# -- sharing ----------------------------------------------------------------------------------
def push(project: Project, names: list[str] | None = None, remote: str | None = None) -> list[str]:
    """Send the cache's objects and snapshots, then the experiment records, to the remote."""
    from repro.remote import open_remote, remote_errors, retry
    from repro.transfer import push as push_cache

    exps = [load(project, n) for n in names] if names else list_all(project)
    push_cache(project, remote)
    rname, rstore = open_remote(project, remote)
    from repro.canonical import packb

    with remote_errors(rname, rstore.backend.url):
        for e in exps:
            data = packb(e.record())
            retry(lambda e=e, data=data: rstore.backend.write_bytes(exp_key(e.name), data))
    return [e.name for e in exps]


def pull(project: Project, names: list[str] | None = None, remote: str | None = None) -> list[str]:
    """Fetch experiment records (checked as untrusted input), their snapshots and the objects
    those name; the workspace is not touched. A local experiment of the same name is kept."""
    from repro.fetch import fetch_objects
    from repro.remote import open_remote, remote_errors, retry
    from repro.snapshots import snapshot_key, snapshot_ok

    rname, rstore = open_remote(project, remote)
    got: list[str] = []
    local = project.cache.backend
    with remote_errors(rname, rstore.backend.url):
        there = {k.partition("/")[2] for k in retry(lambda: list(rstore.backend.list(EXPS)))}
        wanted = names or sorted(n for n in there if _NAME.match(n))
        for n in wanted:
            check_name(n)
            if n not in there:
                raise NotFoundError(f"remote '{rname}': no experiment named '{n}'.")
        for n in wanted:
            data = retry(lambda n=n: rstore.backend.read_bytes(exp_key(n)))
            exp = Experiment.decode(data, f"remote '{rname}': experiment '{n}'")
            if exp.name != n or local.exists(exp_key(n)):
                continue
            hashes: set[str] = set()
            if exp.snapshot:
                key = snapshot_key(exp.snapshot)
                if not local.exists(key):
                    snap_bytes = retry(lambda key=key: rstore.backend.read_bytes(key))
                    if not snapshot_ok(exp.snapshot, snap_bytes):
                        continue  # a damaged or forged snapshot: not taken in
                    local.write_bytes(key, snap_bytes)
                hashes = _snapshot_hashes(project, exp.snapshot)
            if hashes:
                fetch_objects(project, rname, hashes)
            local.write_bytes(exp_key(n), data)
            got.append(n)
    return got


def _snapshot_hashes(project: Project, sig: str) -> set[str]:
    from repro.snapshots import load_snapshot

    snap = load_snapshot(project.cache.backend, sig)
    out = set()
    for group in (snap.outputs(), snap.files, snap.data):
        for d in group.values():
            if d.get("hash") and d.get("cache", True):
                out.add(d["hash"])
    return out
