"""Commands on external data and migration: import-url, update, import-dvc."""

from __future__ import annotations

from typing import Annotated

import typer

from repro.cli_app import JsonOpt, WaitOpt, _emit_json, _human_bytes, _project, app


@app.command("import-url")
def import_url(
    url: Annotated[str, typer.Argument(help="http(s)://, s3://, gs://, az://, or a local file.")],
    path: Annotated[str, typer.Argument(help="Where to put it in the project.")],
    option: Annotated[
        list[str] | None,
        typer.Option("-o", "--option", help="Storage option KEY=VALUE (endpoint_url=...)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace PATH if it exists.")] = False,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Download URL to PATH, store it by content hash, and track it with its source (ETag,
    version id, size) in repro.lock. The data stays frozen until 'repro update PATH'.

    \b
    Example:
      repro import-url https://example.com/data.xml data/data.xml
      repro import-url s3://bucket/raw.csv data/raw.csv -o endpoint_url=http://localhost:9000
    """
    from repro.external import import_url as do_import
    from repro.external import parse_options

    done = do_import(_project(), url, path, parse_options(option or []), force=force, wait=wait)
    if as_json:
        _emit_json(done.to_dict())
        return
    print(f"imported {done.path} ({_human_bytes(done.size)}) {done.hash} from {done.url}")
    print(f"snapshot {done.snapshot}")


@app.command()
def update(
    paths: Annotated[list[str], typer.Argument(help="Imported paths to fetch again.")],
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Fetch imported data again from its recorded source and say whether it changed.

    \b
    Example:
      repro update data/data.xml
    """
    from repro.external import update as do_update

    project = _project()
    done = [do_update(project, p, wait=wait) for p in paths]
    if as_json:
        _emit_json([d.to_dict() for d in done])
        return
    for d in done:
        what = "; ".join(f"{c.field} {c.old} -> {c.new}" for c in d.changes)
        if not d.changed:
            extra = f"; the source's {what}" if what else ""
            print(f"{d.path}: unchanged ({d.hash}{extra})")
            continue
        print(f"{d.path}: changed ({what})")


@app.command("import-dvc")
def import_dvc(
    path: Annotated[str, typer.Argument(help="The DVC project's folder.")] = ".",
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing repro.yaml.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Read a DVC project (dvc.yaml, dvc.lock, *.dvc, params, .dvc/config) and write the
    equivalent repro.yaml, repro.lock data entries and remotes; list what was not carried over.

    \b
    Example:
      cd my-dvc-project && repro init && repro import-dvc
      repro import-dvc legacy/ --force --json
    """
    from repro.dvcimport import import_dvc as do_import

    result = do_import(_project(), path, force=force)
    if as_json:
        _emit_json(result.to_dict())
        return
    print(
        f"wrote repro.yaml: {len(result.stages)} stage(s), {len(result.data)} tracked path(s), "
        f"{len(result.remotes)} remote(s)"
    )
    for note in result.skipped:
        print(f"not carried over: {note}")
