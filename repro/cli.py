"""The `repro` command: a thin face over the Python API.

Commands parse arguments, call the API, and print. Errors from the API (`ReproError`) become one
line on stderr and an exit code here, in `main`, and nowhere else. Heavy modules are imported
inside the commands that use them, so `repro --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated, Any

import typer

from repro.enums import Outcome, ReasonKind
from repro.errors import ReproError

app = typer.Typer(
    name="repro",
    help="Content-addressed reproducibility for data and ML pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
WaitOpt = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for the project lock.", min=0)
]


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


def _err(msg: str) -> None:
    sys.stderr.write(msg.rstrip() + "\n")


def _project():
    from repro.project import Project

    return Project.find()


class _Progress:
    """A rich byte progress bar on a terminal; nothing otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar = None
        self.task = None
        if sys.stderr.isatty() and not os.environ.get("CI"):
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeElapsedColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                transient=True,
                console=_console(stderr=True),
            )

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    @property
    def callback(self):
        if self.bar is None:
            return None
        bar, task = self.bar, self.task
        return lambda n: bar.advance(task, n)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# ---------------------------------------------------------------------------------------------
@app.command()
def init(
    path: Annotated[str, typer.Argument(help="Folder to make a project of.")] = ".",
    hash_name: Annotated[
        str | None,
        typer.Option(
            "--hash",
            help="Content hash: xxh3 (default) or blake3 (caches shared with untrusted writers).",
        ),
    ] = None,
) -> None:
    """Make .repro/ (cache, state db, config, ignore rules) and an empty repro.yaml."""
    from repro import api

    print(f"Initialized repro project in {api.init(path, hash_name)}")


@app.command("hash")
def hash_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files or folders.")],
    as_json: JsonOpt = False,
) -> None:
    """Print content hashes of files and folders, with bytes and seconds."""
    from repro.hashing.engine import Hasher
    from repro.project import Project

    try:
        hasher = Project.find().hasher
    except ReproError:
        hasher = Hasher()
    rows = []
    with _Progress("hashing") as prog:
        for p in paths:
            t0 = time.perf_counter()
            r = hasher.hash_path(p, prog.callback)
            rows.append(
                {
                    "path": p,
                    "hash": r.hash,
                    "bytes": r.size,
                    "seconds": round(time.perf_counter() - t0, 6),
                }
            )
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        secs = r["seconds"]
        rate = f", {_human_bytes(int(r['bytes'] / secs))}/s" if secs > 0.01 else ""
        print(f"{r['hash']}  {r['path']}  ({_human_bytes(r['bytes'])} in {secs:.3f} s{rate})")


@app.command()
def add(
    paths: Annotated[list[str], typer.Argument(help="Files or folders to track.")],
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Track data that no stage makes: store it in the cache and record it in repro.yaml."""
    from repro import api

    with _Progress("adding") as prog:
        result = api.add(paths, wait=wait, progress=prog.callback)
    if as_json:
        _emit_json(result.to_dict())
        return
    for a in result.added:
        kind = f"{a.hash.nfiles} files, " if a.hash.isdir else ""
        print(f"added {a.path} ({kind}{_human_bytes(a.hash.size)}) {a.hash.hash}")
    print(f"snapshot {result.snapshot}")


@app.command()
def checkout(
    sig: Annotated[
        str | None, typer.Argument(help="Snapshot sig (7+ characters); default: repro.lock.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Do not check in content about to be overwritten.")
    ] = False,
    outs_only: Annotated[
        bool, typer.Option("--outs-only", help="Leave code and params files alone.")
    ] = False,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Restore the workspace to snapshot SIG, or to what repro.lock says."""
    from repro import api

    report = api.checkout(sig, force=force, outs_only=outs_only, wait=wait)
    if as_json:
        _emit_json(
            {
                "snapshot": report.snapshot,
                "notes": report.notes,
                "placed": report.placed,
                "removed": report.removed,
                "unchanged": report.unchanged,
                "saved": [{"path": p, "hash": h} for p, h in report.saved],
            }
        )
        return
    for p, h in report.saved:
        print(
            f"saved {p} ({h}) to the cache before overwriting it; "
            f"get it back with: repro restore {h} {p}"
        )
    for note in report.notes:
        print(note)
    print(f"{report.placed} files placed, {report.removed} removed, {report.unchanged} unchanged")


@app.command()
def restore(
    hash_: Annotated[
        str | None, typer.Argument(metavar="[HASH]", help="Content hash of a file or folder.")
    ] = None,
    path: Annotated[str | None, typer.Argument(metavar="[PATH]", help="Where to put it.")] = None,
    force: Annotated[bool, typer.Option("--force")] = False,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Put a cached file or folder back at PATH by its content hash; with no arguments, list
    what repro saved before overwriting it (newest first)."""
    from repro import data

    project = _project()
    if hash_ is None:
        _print_saved(project, as_json)
        return
    if path is None:
        from repro.errors import UsageError

        raise UsageError("repro restore HASH PATH: give the path to restore to.")
    report = data.restore(project, hash_, path, force=force, wait=wait)
    print(f"restored {path}: {report.placed} files placed")


def _print_saved(project, as_json: bool) -> None:
    from repro.saved import list_saved

    rows = [s.to_dict() for s in reversed(list(list_saved(project.dot)))]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        print("nothing was saved before an overwrite")
    for r in rows:
        kind = "folder" if r["isdir"] else "file"
        print(f"{r['when']}  {r['path']} ({kind}) by '{r['command']}'\n    {r['restore']}")


stage_app = typer.Typer(help="Declare stages.", no_args_is_help=True)
app.add_typer(stage_app, name="stage")


@stage_app.command("add")
def stage_add(
    name: Annotated[str, typer.Argument(help="Stage name.")],
    cmd: Annotated[str, typer.Option("--cmd", "-c", help="Command, run with sh -c.")],
    deps: Annotated[list[str], typer.Option("-d", "--deps", help="Dependency.")] = [],  # noqa: B006
    outs: Annotated[list[str], typer.Option("-o", "--outs", help="Output.")] = [],  # noqa: B006
    params: Annotated[list[str], typer.Option("-p", "--params", help="Param key.")] = [],  # noqa: B006
    metrics: Annotated[list[str], typer.Option("-m", "--metrics", help="Metrics file.")] = [],  # noqa: B006
    env: Annotated[list[str], typer.Option("-e", "--env", help="Env var that counts.")] = [],  # noqa: B006
    image: Annotated[str | None, typer.Option("--image", help="Container image.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Stage seed.")] = None,
    wdir: Annotated[str | None, typer.Option("--wdir", help="Working dir.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace a stage.")] = False,
) -> None:
    """Add a stage to repro.yaml (comments and order of the file are kept)."""
    from repro.pipeline.stageadd import stage_add as add_stage

    add_stage(_project(), name, cmd, deps, outs, params, metrics, image, seed, wdir, env, force)
    print(f"added stage '{name}' to repro.yaml")


@app.command()
def run(
    stages: Annotated[list[str] | None, typer.Argument(help="Stages (default: all).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Rerun even when cached.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen.")] = False,
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="Stages to run at once.")] = 1,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="Also the stages after.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Rerun cached stages; compare outputs.")
    ] = False,
    no_remote: Annotated[
        bool, typer.Option("--no-remote", help="Do not ask the remote's run cache.")
    ] = False,
    push: Annotated[bool, typer.Option("--push", help="Upload the results at the end.")] = False,
    wait_lock: Annotated[float, typer.Option("--wait", help="Seconds to wait for the lock.")] = 0.0,
    executor: Annotated[
        str | None,
        typer.Option("--executor", help="Run stages with this executor (a stage's own wins)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bring the pipeline (or the named stages and what they need) up to date."""
    from repro.pipeline.runner import run as run_pipeline

    if jobs < 1:
        from repro.errors import UsageError

        raise UsageError("-j/--jobs must be at least 1.")
    echo = sys.stderr if as_json else sys.stdout
    project = _project()
    result = run_pipeline(
        project,
        stages or None,
        force=force,
        dry_run=dry_run,
        jobs=jobs,
        downstream=downstream,
        echo=echo,
        wait_lock=wait_lock,
        verify=verify,
        use_remote=not no_remote,
        executor=executor,
    )
    if push and not dry_run:
        from repro.transfer import push as push_cache

        push_cache(project)
    if as_json:
        _emit_json(result.to_dict())
    else:
        _print_run(result)
    if not result.ok:
        failed = [s for s in result.stages if s.status == Outcome.FAILED]
        for s in failed:
            _err(f"error: {s.message}")
        for s in result.stages:
            if s.verified is False:
                _err(
                    f"error: stage '{s.name}' is not deterministic: {', '.join(s.mismatches)} "
                    "differ from the recorded result."
                )
        raise typer.Exit(1)


def _print_run(result) -> None:
    verb = {
        Outcome.RAN: "ran",
        Outcome.RESTORED: "restored from cache",
        Outcome.UP_TO_DATE: "up to date",
        Outcome.FAILED: "FAILED",
        Outcome.SKIPPED: "skipped",
    }
    if result.dry_run:
        verb = {**verb, Outcome.RAN: "would run", Outcome.RESTORED: "would restore from cache"}
    for c in result.data:
        print(_data_change_line(c, result.dry_run))
    for s in result.stages:
        extra = ""
        if s.verified is not None:
            extra = " (deterministic)" if s.verified else " (NOT deterministic)"
        elif s.reasons and s.status in (Outcome.RAN, Outcome.RESTORED):
            extra = " (" + ", ".join(f"{r.kind}: {r.target}" for r in s.reasons[:3]) + ")"
        print(f"{s.name}: {verb.get(s.status, s.status)}{extra}")
    if result.snapshot:
        print(f"snapshot {result.snapshot}")


def _data_change_line(c, dry_run: bool) -> str:
    """One line per tracked path a run took as a new version or put back."""
    files = f"{c.hash.nfiles} files" if c.hash.isdir else _human_bytes(c.hash.size)
    if c.action == "restored":
        verb = "would be put back" if dry_run else "put back"
        return f"data: {c.path} {verb} from the cache ({c.hash.hash[:12]}, {files})"
    verb = "would be recorded as" if dry_run else "updated to"
    if c.action == "added":
        verb = "would be recorded as" if dry_run else "recorded as"
    return f"data: {c.path} {verb} {c.hash.hash[:12]} ({files})"


@app.command()
def status(
    stages: Annotated[list[str] | None, typer.Argument(help="Stages (default: all).")] = None,
    as_json: JsonOpt = False,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when any stage is stale.")
    ] = False,
) -> None:
    """Say which stages and tracked data are stale and why."""
    from repro import api

    rep = api.status(stages or None)
    if as_json:
        _emit_json(rep.to_dict())
    else:
        for r in rep.stages:
            if r.state == "up-to-date":
                print(f"{r.name}: up to date")
            else:
                why = "; ".join(_reason_text(x) for x in r.reasons)
                print(f"{r.name}: stale ({why})")
        for d in rep.data:
            if d.state == "up-to-date":
                print(f"data {d.path}: up to date")
            else:
                why = "; ".join(_reason_text(x) for x in d.reasons)
                print(f"data {d.path}: stale ({why})")
        if not rep.stages and not rep.data:
            print("no stages in repro.yaml")
        _print_missing_summary(rep)
    if exit_code and rep.stale:
        raise typer.Exit(1)


def _print_missing_summary(rep) -> None:
    """One closing line when content is missing locally: how much, and that pull fetches it."""
    seen: dict[str, tuple[int, int]] = {}
    for row in [*rep.stages, *rep.data]:
        for r in row.reasons:
            if r.kind == ReasonKind.MISSING:
                seen[r.target] = (r.count or 0, r.size or 0)
    if seen:
        count = sum(c for c, _ in seen.values())
        size = sum(b for _, b in seen.values())
        print(
            f"{count} file{'' if count == 1 else 's'} ({_human_bytes(size)}) of {len(seen)} "
            "recorded path(s) are not in the local cache; 'repro pull' fetches them "
            "('repro run' does too)."
        )


def _reason_text(r) -> str:
    if r.kind == ReasonKind.IMAGE and r.old and r.new:
        return (
            f"image: {r.target} now points at {r.new}, locked {r.old}; "
            "'repro lock --update' moves to it"
        )
    if r.kind == ReasonKind.MISSING:
        return (
            f"missing: {r.target} ({r.count} file{'' if r.count == 1 else 's'}, "
            f"{_human_bytes(r.size or 0)} not in the local cache; repro pull)"
        )
    if r.kind == ReasonKind.DATA and r.new is None and r.old:
        return f"data: {r.target} (not in the workspace; 'repro checkout' puts it back)"
    if r.kind == ReasonKind.DATA and r.old and r.new:
        return f"data: {r.target} (changed; 'repro run' records the new version)"
    return f"{r.kind}: {r.target}"


@app.command()
def dag(
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Mermaid flowchart.")] = False,
    dot: Annotated[bool, typer.Option("--dot", help="Graphviz dot.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Draw the pipeline graph."""
    from repro.pipeline.dag import render

    print(
        render(
            _project(), "mermaid" if mermaid else "dot" if dot else "json" if as_json else "text"
        )
    )


@app.command()
def log(
    n: Annotated[int | None, typer.Option("-n", help="Show at most N runs.")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Only runs that ran STAGE.")] = None,
    saved: Annotated[
        bool, typer.Option("--saved", help="List content saved before an overwrite.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The runs, newest first (--saved: what repro saved before overwriting it)."""
    if saved:
        _print_saved(_project(), as_json)
        return
    from repro import api

    rows = api.log(n, stage)
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        print("no runs yet")
    for r in rows:
        commit = (r["git_commit"] or "-")[:8]
        sig = (r["snapshot"] or "-")[:12]
        metrics = "  ".join(f"{k}={v}" for m in r["metrics"].values() for k, v in m.items())
        print(
            f"{r['run_id']}  {sig:12s}  {r['started'][:19]}  {r['user']}@{r['host']}  "
            f"{commit:8s}  {r['kind']:3s} {r['status']:6s}  {metrics}".rstrip()
        )


@app.command()
def show(
    ref: Annotated[str, typer.Argument(metavar="SIG|RUN_ID", help="Snapshot sig or run id.")],
    logs: Annotated[str | None, typer.Option("--logs", help="Print STAGE's kept output.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One snapshot or run in full."""
    from repro import api

    if logs:
        from repro import history

        out, err = history.stage_logs(_project(), ref, logs)
        sys.stdout.write(out)
        sys.stderr.write(err)
        return
    doc = api.show(ref)
    if as_json:
        _emit_json(doc)
        return
    from repro.pipeline.specio import dump_yaml

    print(dump_yaml(doc), end="")


@app.command()
def diff(
    a: Annotated[
        str | None,
        typer.Argument(help="From: a sig, a git revision or repro.lock (default: repro.lock)."),
    ] = None,
    b: Annotated[
        str | None, typer.Argument(help="To: the same kinds, or workspace (default).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two states (default: repro.lock against the workspace)."""
    from repro import api

    doc = api.diff(a, b)
    if as_json:
        _emit_json(doc)
        return
    from repro.safety import is_hash

    def short(name: str) -> str:  # a sig is shortened; `HEAD~1 (0a1b2c3d4e)` is shown whole
        return name[:12] if is_hash(name) else name

    print(f"from {short(doc['from'])} to {short(doc['to'])}")
    if doc.get("absent"):
        n = len(doc["absent"])
        print(
            f"note: {n} recorded path{'s are' if n > 1 else ' is'} not in the workspace "
            f"({', '.join(doc['absent'][:3])}{', ...' if n > 3 else ''}); compared as "
            "recorded. 'repro pull' fetches them."
        )
    if not doc["stages"] and not doc["data"]:
        print("no changes")
    for item in doc["data"]:
        print(f"data: {_change_line(item)}")
    for st in doc["stages"]:
        print(f"{st['name']}:")
        for c in st["changes"]:
            print(f"  {_change_line(c)}")


def _short(v: Any) -> str:
    if isinstance(v, dict) and "hash" in v:
        return f"{v['hash'][:10]} ({_human_bytes(v.get('size') or 0)})"
    return json.dumps(v) if not isinstance(v, str) else v


def _change_line(c: dict) -> str:
    line = f"[{c['severity']}] {c['kind']} {c['target']}: {_short(c['old'])} -> {_short(c['new'])}"
    if c.get("note"):
        line += f" ({c['note']})"
    if c.get("files"):
        f = c["files"]
        line += f" [+{len(f['added'])} -{len(f['removed'])} ~{len(f['changed'])} files]"
    for k, m in (c.get("metrics") or {}).items():
        delta = f" ({m['delta']:+g})" if m.get("delta") is not None else ""
        line += f"\n      {k}: {m['old']} -> {m['new']}{delta}"
    return line


remote_app = typer.Typer(
    help="Manage remotes (shared caches on any fsspec URL).", no_args_is_help=True
)
app.add_typer(remote_app, name="remote")


@remote_app.command("add")
def remote_add(
    name: Annotated[str, typer.Argument(help="Remote name.")],
    url: Annotated[str, typer.Argument(help="fsspec URL: s3://bucket/path, /mnt/cache, ...")],
    default: Annotated[bool, typer.Option("--default", "-d", help="Make it the default.")] = False,
    options: Annotated[
        list[str], typer.Option("-o", "--option", help="KEY=VALUE storage option for fsspec.")
    ] = [],  # noqa: B006
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace a remote.")] = False,
) -> None:
    """Add a remote."""
    from repro.remote import add_remote

    add_remote(_project(), name, url, default, options, force)
    print(f"remote '{name}' -> {url}")


@remote_app.command("list")
def remote_list(as_json: JsonOpt = False) -> None:
    """List remotes."""
    from repro.remote import list_remotes

    rows = list_remotes(_project())
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        opts = " ".join(f"{k}={v}" for k, v in r["options"].items())
        print(f"{r['name']}\t{r['url']}{' (default)' if r['default'] else ''}  {opts}".rstrip())


@remote_app.command("remove")
def remote_remove(name: Annotated[str, typer.Argument(help="Remote name.")]) -> None:
    """Remove a remote."""
    from repro.remote import remove_remote

    remove_remote(_project(), name)


@remote_app.command("default")
def remote_default(name: Annotated[str, typer.Argument(help="Remote name.")]) -> None:
    """Make a remote the default."""
    from repro.remote import set_default

    set_default(_project(), name)


class _TransferProgress(_Progress):
    @property
    def callback(self):
        if self.bar is None:
            return None
        bar, task = self.bar, self.task
        return lambda files, nbytes: bar.advance(task, nbytes)


RemoteOpt = Annotated[str | None, typer.Option("--remote", "-r", help="Remote name.")]
JobsOpt = Annotated[int, typer.Option("-j", "--jobs", help="Parallel transfers.")]


@app.command()
def push(
    targets: Annotated[list[str] | None, typer.Argument(help="Stages or paths.")] = None,
    remote: RemoteOpt = None,
    jobs: JobsOpt = 8,
    verify_remote: Annotated[
        bool,
        typer.Option("--verify-remote", help="Re-read the remote's copies; replace bad ones."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Upload what the remote lacks: objects, run cache, snapshots, records."""
    from repro import api

    with _TransferProgress("pushing") as prog:
        report = api.push(
            targets or None, remote, jobs=jobs, verify_remote=verify_remote, progress=prog.callback
        )
    for key in report.repaired:
        _err(f"repaired on remote '{report.remote}': {key}")
    _print_transfer(report, "pushed", as_json)


@app.command()
def pull(
    targets: Annotated[list[str] | None, typer.Argument(help="Stages or paths.")] = None,
    remote: RemoteOpt = None,
    jobs: JobsOpt = 8,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Download what repro.lock needs and the local cache lacks, then check it out."""
    from repro import api

    with _TransferProgress("pulling") as prog:
        report = api.pull(targets or None, remote, jobs=jobs, wait=wait, progress=prog.callback)
    _print_transfer(report, "pulled", as_json)


def _print_transfer(report, verb: str, as_json: bool) -> None:
    for line in report.refused:
        _err(f"warning: {line}")
    if as_json:
        _emit_json(report.to_dict())
        return
    print(
        f"{verb} {report.objects} objects ({_human_bytes(report.bytes)}) and {report.meta} "
        f"records; {report.present} already there (remote '{report.remote}')"
    )


@app.command()
def gc(
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", help="Keep the N most recent snapshots.")
    ] = None,
    keep: Annotated[list[str], typer.Option("--keep", help="Also keep snapshot SIG.")] = [],  # noqa: B006
    remote: RemoteOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Drop what no kept snapshot reaches."""
    from repro.maintenance import gc as do_gc

    if keep_last is not None and keep_last < 0:
        from repro.errors import UsageError

        raise UsageError(f"--keep-last {keep_last}: give a number of snapshots, 0 or more.")
    report = do_gc(_project(), remote, keep_last, keep, dry_run, wait=wait)
    if as_json:
        _emit_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    print(
        f"{report.store}: {verb} {report.objects} objects ({_human_bytes(report.bytes)}), "
        f"{report.snapshots} snapshots, {report.runs} run-cache entries; kept "
        f"{report.kept_snapshots} snapshots"
    )


@app.command()
def fsck(
    remote: RemoteOpt = None,
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Heal from the workspace and the (-r or default) remote."),
    ] = False,
    all_states: Annotated[
        bool,
        typer.Option("--all", help="Missing: what any kept snapshot needs, not only repro.lock."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-hash every object; report corrupt ones and missing ones that repro.lock (or, with
    --all, any kept snapshot) needs; with --repair, heal them."""
    from repro.maintenance import fsck as do_fsck

    report = do_fsck(_project(), remote, repair, all_states)
    if as_json:
        _emit_json(report.to_dict())
    else:
        for r in (report, report.remote):
            if r is None:
                continue
            print(
                f"{r.store}: {r.checked} objects checked, {len(r.corrupt)} corrupt, "
                f"{len(r.missing)} missing ({r.scope})"
                + (f", {len(r.repaired)} repaired" if repair else "")
            )
            for k in r.corrupt:
                print(f"corrupt: {k}")
            for h in r.missing:
                state, path = r.needed_by.get(h, ("", ""))
                print(f"missing: {h} ({state}: {path})" if state else f"missing: {h}")
            for k in r.repaired:
                print(f"repaired: {k}")
            for k in r.moved_aside:
                print(f"moved aside: {k}")
            for n in r.notes:
                print(f"note: {n}")
    if report.lock_error:
        _err(f"error: {report.lock_error}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("lock")
def lock_cmd(
    update: Annotated[bool, typer.Option("--update", help="Re-resolve every tag.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Resolve stage images to immutable digests and write them to repro.lock."""
    from repro.execution.images import lock_images

    changes = lock_images(_project(), update)
    if as_json:
        _emit_json({ref: {"old": old, "new": new} for ref, (old, new) in changes.items()})
        return
    if not changes:
        print("no stage declares an image")
    for ref, (old, new) in changes.items():
        if old and old != new:
            print(f"{ref}: {old} -> {new}")
        else:
            print(f"{ref}: {new}")


@app.command()
def env(as_json: JsonOpt = False) -> None:
    """The environment fingerprint of this interpreter: Python, platform, distributions."""
    from repro.pipeline.envfp import current_environment

    fp = current_environment()
    if as_json:
        _emit_json(fp)
        return
    print(f"python {fp['python']} ({fp['executable']}) on {fp['platform']}")
    for name, version in fp["packages"].items():
        print(f"  {name} {version}")


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C, so that a run stops its
    stages' process groups (and every command cleans up) exactly as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_signalled: list[int] = []
_first_signal = [0.0]


def _on_signal(signum: int, _frame: object) -> None:
    now = time.monotonic()
    if _signalled and now - _first_signal[0] < 15:
        return  # the first one is being handled: let its clean-up (at most ~10 s) finish
    _signalled.append(signum)
    _first_signal[0] = now
    raise Signalled(signum)


def _install_signal_handlers() -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # `nohup repro run` keeps ignoring
            signal.signal(sig, _on_signal)


def _interrupted(fallback: int = 130) -> None:
    """One line and the shell's exit code for a signal: 130 (Ctrl-C), 143 (SIGTERM), 129
    (SIGHUP)."""
    import signal

    if _signalled:
        signum = _signalled[0]
        try:
            _err(f"stopped by {signal.Signals(signum).name}.")
        except OSError:
            pass  # a hung-up terminal
        sys.exit(128 + signum)
    _err("interrupted.")
    sys.exit(fallback)


def main() -> None:
    """Entry point: run the app, turning repro's errors into one stderr line and an exit code."""
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    _install_signal_handlers()
    try:
        code = app(standalone_mode=False)
    except ReproError as exc:
        if debug:
            raise
        _err(f"error: {exc.message}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except BrokenPipeError:
        sys.exit(141)
    except Exception as exc:  # click's own usage errors and anything unexpected
        click_exc = _click_exception(exc)
        if click_exc is not None:
            click_exc.show()
            sys.exit(click_exc.exit_code)
        if debug:
            raise
        if _disk_full(exc):
            sys.exit(1)
        _err(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)")
        sys.exit(70)
    if code == 130 or _signalled:  # typer turns Ctrl-C into exit code 130
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)


def _disk_full(exc: Exception) -> bool:
    """Say so in one sentence when `exc` is a full disk or quota (not a bug: exit 1, not 70)."""
    import errno

    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return False
    where = f" while writing {exc.filename}" if exc.filename else ""
    _err(f"error: no space left on the device{where}; free some space and run the command again.")
    return True


def _click_exception(exc: Exception):
    for mod in ("typer._click.exceptions", "click.exceptions"):
        try:
            m = __import__(mod, fromlist=["ClickException"])
        except ImportError:
            continue
        if isinstance(exc, m.ClickException):
            return exc
        if isinstance(exc, getattr(m, "Abort", ())):
            _err("aborted.")
            sys.exit(1)
    return None


if __name__ == "__main__":
    main()
