"""Commands that share and maintain the cache: remote *, push, pull, gc, fsck."""

from __future__ import annotations

from typing import Annotated

import typer

from repro.cli_app import (
    JsonOpt,
    WaitOpt,
    _emit_json,
    _err,
    _human_bytes,
    _Progress,
    _project,
    app,
)

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
    """Add a remote.

    \b
    Example:
      repro remote add origin s3://bucket/repro --default
    """
    from repro.remote import add_remote

    add_remote(_project(), name, url, default, options, force)
    print(f"remote '{name}' -> {url}")


@remote_app.command("list")
def remote_list(as_json: JsonOpt = False) -> None:
    """List remotes.

    \b
    Example:
      repro remote list --json
    """
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
    """Remove a remote.

    \b
    Example:
      repro remote remove origin
    """
    from repro.remote import remove_remote

    remove_remote(_project(), name)


@remote_app.command("default")
def remote_default(name: Annotated[str, typer.Argument(help="Remote name.")]) -> None:
    """Make a remote the default.

    \b
    Example:
      repro remote default origin
    """
    from repro.remote import set_default

    set_default(_project(), name)


class _TransferProgress(_Progress):
    """Called with (files, bytes) moved; the transfer says its totals as an "upload" phase."""


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
    """Upload what the remote lacks: objects, run cache, snapshots, records.

    \b
    Example:
      repro push -r origin -j 8
    """
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
    """Download what repro.lock needs and the local cache lacks, then check it out.

    \b
    Example:
      repro pull train
    """
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
    """Drop what no kept snapshot reaches.

    \b
    Example:
      repro gc --keep-last 10 --dry-run
    """
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
    packs = report.packs_removed + report.packs_rewritten
    if packs or report.packed_loose or report.orphans_removed:
        verb = "would rewrite" if dry_run else "rewrote"
        print(
            f"packs: {verb} {packs} ({report.packs_removed} emptied, "
            f"{report.packs_rewritten} compacted), {report.packed_loose} loose objects "
            f"packed, {report.orphans_removed} orphans removed"
        )
    for key in report.damaged_packed + report.bad_indexes:
        print(f"damaged: {key} (kept; 'repro fsck --repair' heals it)")


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
    --all, any kept snapshot) needs; with --repair, heal them.

    \b
    Example:
      repro fsck --all --repair
    """
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
