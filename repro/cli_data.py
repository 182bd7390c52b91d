"""Commands on tracked data: init, hash, add, checkout, restore."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from repro.cli_app import (
    JsonOpt,
    WaitOpt,
    _emit_json,
    _human_bytes,
    _print_saved,
    _Progress,
    _project,
    app,
)
from repro.errors import ReproError


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
    """Make .repro/ (cache, state db, config, ignore rules) and an empty repro.yaml.

    \b
    Example:
      repro init
      repro init --hash blake3
    """
    from repro import api

    print(f"Initialized repro project in {api.init(path, hash_name)}")


@app.command("hash")
def hash_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files or folders.")],
    as_json: JsonOpt = False,
) -> None:
    """Print content hashes of files and folders, with bytes and seconds.

    \b
    Example:
      repro hash data/ model.pkl --json
    """
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
    """Track data that no stage makes: store it in the cache and record it in repro.yaml.

    \b
    Example:
      repro add data/raw.csv data/images
    """
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
    """Restore the workspace to snapshot SIG, or to what repro.lock says.

    \b
    Example:
      repro checkout
      repro checkout 3f2a9c1 --force
    """
    from repro import api

    with _Progress("checking out") as prog:
        report = api.checkout(
            sig, force=force, outs_only=outs_only, wait=wait, progress=prog.callback
        )
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
    what repro saved before overwriting it (newest first).

    \b
    Example:
      repro restore
      repro restore 5be55a98f42c0b1d model.pkl
    """
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
