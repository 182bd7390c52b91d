"""The fast path of the `repro` command: `repro status` and a `repro run` with no options but
`--json` (and `repro --version`), without importing typer, click or rich.

Why: a status or a no-op run of a 50-stage chain does 5-20 ms of work, and typer alone costs
~25 ms to import. `repro.cli.main` asks `fast_command(argv)` first; it answers with a callable
only for command lines it understands completely (the flags below, stage names, nothing else),
and everything else (`-h`, other flags, other commands, a shell asking for completions) goes to
the Typer app unchanged. `REPRO_NO_FAST=1` forces the Typer path.

The output must be byte for byte the Typer path's (repro/cli_run.py: `run`, `status` and their
printers); tests/test_startup_fast.py runs both on one project and compares stdout, stderr and
exit codes. A change to what those commands print is made in both places. This module sits
below repro.cli_app in the import contract, so it cannot reach typer through it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from repro.cli_render import human_bytes

__all__ = ["emit_json", "err", "fast_command"]

# The flags each fast command understands; anything else on its command line falls through.
_FLAGS = {"status": frozenset({"--json", "--exit-code"}), "run": frozenset({"--json"})}


def fast_command(args: list[str]) -> Callable[[], int] | None:
    """The fast implementation of the command line `args` (argv without the program), as a
    callable returning the exit code; None when the Typer app must handle it."""
    if args == ["--version"]:
        return _version
    if not args or args[0] not in _FLAGS:
        return None
    flags: set[str] = set()
    names: list[str] = []
    for a in args[1:]:
        if a in _FLAGS[args[0]]:
            flags.add(a)  # click takes a repeated flag as one
        elif a and not a.startswith("-"):
            names.append(a)  # a stage name, as click's positional `stages`
        else:
            return None
    if args[0] == "status":
        return partial(_status, names, "--json" in flags, "--exit-code" in flags)
    return partial(_run, names, "--json" in flags)


def _guarded(command: Callable[[], int]) -> int:
    """Run `command` as typer's main would: a closed pipe on output is exit 1, quietly."""
    import errno

    try:
        return command()
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        _silence_output()
        return 1


def _silence_output() -> None:
    """After EPIPE: what is still buffered goes nowhere, so the exit flush does not fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass  # not a real file (a test's StringIO)


def _load(*modules: str) -> None:
    """Import what the command needs with the cyclic garbage collector paused: imports make
    many objects and no cycles worth collecting, and the collections they set off cost ~3 ms
    of a ~45 ms `repro status`. The collector runs as usual for the command's own work."""
    import gc
    import importlib

    paused = gc.isenabled()
    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        if paused:
            gc.enable()


def _version() -> int:
    from repro import __version__

    print(f"repro {__version__}")
    return 0


# -- output, as repro.cli_app prints it -----------------------------------------------------------
def emit_json(doc: Any) -> None:
    """One JSON document on stdout (as repro.cli_app's `_emit_json`)."""
    import json

    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


def err(msg: str) -> None:
    """One line on stderr (as repro.cli_app's `_err`)."""
    sys.stderr.write(msg.rstrip() + "\n")


# -- repro status ----------------------------------------------------------------------------------
def _status(names: list[str], as_json: bool, exit_code: bool) -> int:
    return _guarded(partial(_status_body, names, as_json, exit_code))


def _status_body(names: list[str], as_json: bool, exit_code: bool) -> int:
    _load("repro.api", "repro.pipeline.status", "repro.execution.images")
    from repro import api

    rep = api.status(names or None)
    if as_json:
        emit_json(rep.to_dict())
    else:
        print_status_report(rep)
    return 1 if exit_code and rep.stale else 0


def print_status_report(rep: Any) -> None:
    """`repro status` for people: each stage and tracked path, the summary line, and what the
    local cache lacks."""
    print_status(rep)
    if not rep.stages and not rep.data:
        print("no stages in repro.yaml")
    else:
        print(status_summary(rep))
    print_missing_summary(rep)


def print_status(rep: Any) -> None:
    from repro.cli_render import rich_stdout

    rows = [(r.name, r) for r in rep.stages] + [(f"data {d.path}", d) for d in rep.data]
    if not rich_stdout():
        for name, r in rows:
            if r.state == "up-to-date":
                print(f"{name}: up to date")
            else:
                print(f"{name}: stale ({'; '.join(reason_text(x) for x in r.reasons)})")
        return
    from repro.cli_render import REASON_STYLE, STATE_STYLE, print_styled

    for name, r in rows:
        state = "up to date" if r.state == "up-to-date" else "stale"
        print_styled([(name, "bold"), ("  ", None), (state, STATE_STYLE[state])])
        for x in r.reasons:
            kind = str(x.kind)
            text = reason_text(x).removeprefix(f"{kind}: ")
            print_styled([("    ", None), (f"{kind:<9}", REASON_STYLE.get(kind)), (text, None)])


def status_summary(rep: Any) -> str:
    stale = sum(r.state != "up-to-date" for r in rep.stages)
    n = len(rep.stages)
    line = f"{stale} of {n} stage{'' if n == 1 else 's'} stale"
    if rep.data:
        bad = sum(d.state != "up-to-date" for d in rep.data)
        line += f", {bad} of {len(rep.data)} tracked path{'' if len(rep.data) == 1 else 's'}"
        line += " stale"
    return line + ("; 'repro run' brings them up to date" if rep.stale else "")


def print_missing_summary(rep: Any) -> None:
    from repro.enums import ReasonKind

    seen: dict[str, tuple[int, int]] = {}
    for row in [*rep.stages, *rep.data]:
        for r in row.reasons:
            if r.kind == ReasonKind.MISSING:
                seen[r.target] = (r.count or 0, r.size or 0)
    if seen:
        count = sum(c for c, _ in seen.values())
        size = sum(b for _, b in seen.values())
        print(
            f"{count} file{'' if count == 1 else 's'} ({human_bytes(size)}) of {len(seen)} "
            "recorded path(s) are not in the local cache; 'repro pull' fetches them "
            "('repro run' does too)."
        )


def reason_text(r: Any) -> str:
    from repro.enums import ReasonKind

    if r.kind == ReasonKind.IMAGE and r.old and r.new:
        return (
            f"image: {r.target} now points at {r.new}, locked {r.old}; "
            "'repro lock --update' moves to it"
        )
    if r.kind == ReasonKind.MISSING:
        return (
            f"missing: {r.target} ({r.count} file{'' if r.count == 1 else 's'}, "
            f"{human_bytes(r.size or 0)} not in the local cache; repro pull)"
        )
    if r.kind == ReasonKind.DATA and r.new is None and r.old:
        return f"data: {r.target} (not in the workspace; 'repro checkout' puts it back)"
    if r.kind == ReasonKind.DATA and r.old and r.new:
        return f"data: {r.target} (changed; 'repro run' records the new version)"
    if r.kind == "external" and isinstance(r.new, dict):
        what = ", ".join(sorted(r.new))
        return f"external: {r.target} (source changed: {what}; 'repro update {r.target}')"
    return f"{r.kind}: {r.target}"


# -- repro run -------------------------------------------------------------------------------------
def _run(names: list[str], as_json: bool) -> int:
    return _guarded(partial(_run_body, names, as_json))


def _run_body(names: list[str], as_json: bool) -> int:
    _load("repro.pipeline.runner")
    from repro.project import Project

    project = Project.find()
    try:
        result = _run_project(project, names, as_json)
    finally:
        state = project.__dict__.get("state")  # the stat cache, when it was opened
        if state is not None:
            state.close()
    return report_run(result, as_json)


def report_run(result: Any, as_json: bool) -> int:
    """Print a run's result (JSON or lines) and, for a failed run, one error line per failed
    stage and per stage found not deterministic; the exit code."""
    from repro.enums import Outcome

    if as_json:
        emit_json(result.to_dict())
    else:
        print_run(result)
    if result.ok:
        return 0
    for s in result.stages:
        if s.status == Outcome.FAILED:
            err(f"error: {s.message}")
    for s in result.stages:
        if s.verified is False:
            err(
                f"error: stage '{s.name}' is not deterministic: {', '.join(s.mismatches)} "
                "differ from the recorded result."
            )
    return 1


def _run_project(project: Any, names: list[str], as_json: bool) -> Any:
    from repro.pipeline.runner import run as run_pipeline

    _check_dask_remote(project)
    return run_pipeline(
        project,
        names or None,
        force=False,
        dry_run=False,
        jobs=1,
        downstream=False,
        echo=sys.stderr if as_json else sys.stdout,
        wait_lock=0.0,
        verify=False,
        use_remote=True,
        executor=None,
        progress=_caching_progress(),
    )


def _caching_progress():
    from repro.cli_render import progress_for, progress_wanted

    return progress_for if progress_wanted() else None


def _check_dask_remote(project: Any) -> None:
    """`run.executor = dask` in the config without a shared remote: refused before anything is
    read or written (as repro.cli_run's `_check_dask_remote` without `--executor`)."""
    if (project.config.get("run") or {}).get("executor") != "dask":
        return
    from repro.remote import default_remote_name

    if not default_remote_name(project):
        from repro.pipeline.stageexec import needs_remote_error

        raise needs_remote_error(".repro/config.toml: key 'run.executor'")


def print_run(result: Any) -> None:
    """One line per tracked path taken, one per stage, then the snapshot (a dry run says what
    it would do)."""
    from repro.enums import Outcome

    verb = {
        Outcome.RAN: "ran",
        Outcome.RESTORED: "restored from cache",
        Outcome.UP_TO_DATE: "up to date",
        Outcome.FAILED: "FAILED",
        Outcome.SKIPPED: "skipped",
    }
    dry_run = bool(getattr(result, "dry_run", False))
    if dry_run:
        verb = {**verb, Outcome.RAN: "would run", Outcome.RESTORED: "would restore from cache"}
    for c in result.data:
        print(data_change_line(c, dry_run))
    for s in result.stages:
        extra = ""
        if s.verified is not None:
            extra = " (deterministic)" if s.verified else " (NOT deterministic)"
        elif s.reasons and s.status in (Outcome.RAN, Outcome.RESTORED):
            extra = " (" + ", ".join(f"{r.kind}: {r.target}" for r in s.reasons[:3]) + ")"
        print(f"{s.name}: {verb.get(s.status, s.status)}{extra}")
    if result.snapshot:
        print(f"snapshot {result.snapshot}")


def data_change_line(c: Any, dry_run: bool = False) -> str:
    """One line per tracked path a run took as a new version or put back."""
    files = f"{c.hash.nfiles} files" if c.hash.isdir else human_bytes(c.hash.size)
    if c.action == "restored":
        verb = "would be put back" if dry_run else "put back"
        return f"data: {c.path} {verb} from the cache ({c.hash.hash[:12]}, {files})"
    verb = "would be recorded as" if dry_run else "updated to"
    if c.action == "added":
        verb = "would be recorded as" if dry_run else "recorded as"
    return f"data: {c.path} {verb} {c.hash.hash[:12]} ({files})"
