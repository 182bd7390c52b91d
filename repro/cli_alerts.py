"""Alert deliveries: `repro alerts pending|retry|test`."""

from __future__ import annotations

from typing import Annotated

import typer

from repro.cli_app import JsonOpt, _emit_json, _err, _project, app

alerts_app = typer.Typer(
    help="Alerts: deliveries waiting to be re-sent, and a test of the [[alerts]] sinks.",
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("pending")
def alerts_pending(as_json: JsonOpt = False) -> None:
    """List alert deliveries that failed and wait for 'repro alerts retry'.

    \b
    Example:
      repro alerts pending --json
    """
    from repro.alerts import pending

    rows = [p.to_dict() for p in pending(_project().root)]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        print("no alert is pending")
    for r in rows:
        ev, sink = r["event"], r["sink"]
        print(
            f"{r['id']}  {ev.get('severity')} alert to entry {r['entry']} ({sink.get('kind')}), "
            f"{r['attempts']} attempt(s)\n    last error: {r['last_error']}"
        )
    if rows:
        print(f"{len(rows)} pending: 'repro alerts retry' re-sends them once the cause is fixed")


@alerts_app.command("retry")
def alerts_retry(as_json: JsonOpt = False) -> None:
    """Re-send the pending alert deliveries; a delivered one leaves the queue.

    \b
    Example:
      REPRO_ALERT_KEY=... repro alerts retry
    """
    from repro.alerts import retry
    from repro.errors import ReproError

    project = _project()
    done = retry(project.root, project.config)
    if as_json:
        _emit_json([d.to_dict() for d in done])
    else:
        if not done:
            print("no alert is pending")
        for d in done:
            if d.ok:
                print(f"delivered {d.pending} to entry {d.entry} ({d.kind} {d.target})")
    failed = [d for d in done if not d.ok]
    for d in failed:
        _err(f"warning: {d.warning}")
    if failed:
        raise ReproError(
            f"{len(failed)} of {len(done)} pending alert(s) still undelivered; they stay in "
            ".repro/alerts/pending/."
        )


@alerts_app.command("test")
def alerts_test(
    on: Annotated[
        str | None,
        typer.Option(
            "--on",
            help="Severity of the sample event: major, minor, failure or any (default: "
            "each entry gets the severity it asks for).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a sample alert to each [[alerts]] entry that wants it: check a new configuration.

    \b
    Example:
      repro alerts test --on major
    """
    from repro.alerts import ON_VALUES, entries, send_test
    from repro.errors import ReproError, UsageError

    if on is not None and on not in ON_VALUES:
        raise UsageError(f"--on must be one of {', '.join(ON_VALUES)}, not '{on}'.")
    project = _project()
    if not entries(project.config):
        raise ReproError(
            ".repro/config.toml has no [[alerts]] entry to test; add one first "
            "(docs/observe.md, 'Alerts', shows webhook, slack and command entries)."
        )
    done = send_test(project.root, project.config, on)
    if as_json:
        _emit_json([d.to_dict() for d in done])
    else:
        if not done:
            print(f"no [[alerts]] entry wants a {on} alert")
        for d in done:
            if d.ok:
                print(f"entry {d.entry} ({d.kind} {d.target}): delivered")
    failed = [d for d in done if not d.ok]
    for d in failed:
        _err(f"warning: {d.warning}")
    if failed:
        raise ReproError(f"{len(failed)} of {len(done)} test alert(s) could not be delivered.")
