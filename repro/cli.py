"""The `repro` command: a thin face over the Python API.

Commands parse arguments, call the API, and print. Errors from the API (`ReproError`) become one
line on stderr and an exit code here, in `main`, and nowhere else. Heavy modules are imported
inside the commands that use them, so `repro --help` stays fast.

The app and shared helpers live in repro/cli_app.py; the commands in repro/cli_data.py,
cli_run.py, cli_history.py, cli_share.py, cli_env.py, cli_gate.py, cli_tags.py,
cli_alerts.py, cli_report.py, cli_metrics.py, cli_plots.py, cli_exp.py, cli_external.py and
cli_manage.py, imported here (when `app` is first used) so they register. `repro status`,
`repro run` with no option but `--json`, and `repro --version` take a fast path first
(repro/cli_fast.py: same output, no typer); `REPRO_NO_FAST=1` turns it off.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from repro.cli_fast import err as _err
from repro.cli_fast import fast_command
from repro.errors import ReproError

if TYPE_CHECKING:
    from repro.cli_app import app

__all__ = ["Signalled", "app", "main"]


def __getattr__(name: str) -> Any:
    """`app`, the Typer app with every command registered, built on first use: `repro status`
    and a no-op `repro run` take the fast path (repro/cli_fast.py) and never import typer."""
    if name == "app":
        return _load_app()
    raise AttributeError(f"module 'repro.cli' has no attribute {name!r}")


def _load_app() -> Any:
    import typer

    from repro.cli_app import app

    # Importing a command module registers its commands on `app`; `repro --help` lists them in
    # this order, so keep it (the groups `stage` and `remote` come last whatever the order).
    # isort: off
    from repro import cli_data, cli_run, cli_history, cli_share, cli_env  # noqa: F401
    from repro import cli_gate, cli_tags, cli_alerts  # noqa: F401
    from repro import cli_report, cli_metrics, cli_plots  # noqa: F401
    from repro import cli_exp, cli_external, cli_manage  # noqa: F401
    # isort: on

    if globals().get("app") is app:
        return app
    # `-h` as well as `--help`, on every command (click passes it down to subcommands).
    app.info.context_settings = {
        **(app.info.context_settings or {}),
        "help_option_names": ["-h", "--help"],
    }

    def _root(
        version: bool = typer.Option(
            False,
            "--version",
            help="Print repro's version and exit.",
            is_eager=True,
            callback=_show_version,
        ),
    ) -> None:
        pass

    app.callback()(_root)
    globals()["app"] = app  # later lookups find it without __getattr__
    return app


def _show_version(value: bool) -> None:
    if value:
        import typer

        from repro import __version__

        print(f"repro {__version__}")
        raise typer.Exit()


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
    extra: dict[str, str] = {}
    fast = None
    if "_REPRO_COMPLETE" in os.environ:  # a shell asking for completions (`repro completion`)
        from typer.completion import completion_init

        completion_init()
        extra = {"prog_name": "repro", "complete_var": "_REPRO_COMPLETE"}
    elif os.environ.get("REPRO_NO_FAST", "") in ("", "0"):
        fast = fast_command(sys.argv[1:])
    if fast is None:
        _dispatch(lambda: _load_app()(standalone_mode=False, **extra), debug)
        return
    try:
        _dispatch(fast, debug)
    except SystemExit as exc:
        if isinstance(exc.code, int) and _is_program():
            _quick_exit(exc.code)
        raise


def _dispatch(command: Callable[[], Any], debug: bool) -> None:
    """Run `command`; exit with its code, or with one sentence on stderr and an error code."""
    try:
        code = command()
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


def _is_program() -> bool:
    """Whether this `main` is the program (the `repro` script, `python -m repro`), not a call
    from other Python code that goes on after it (a test running the command in-process)."""
    return getattr(sys.modules.get("__main__"), "main", None) is main and not sys.flags.inspect


def _quick_exit(code: int) -> None:
    """Leave now, without the interpreter's tear-down (freeing every module costs ~5 ms, a tenth
    of a no-op `repro status`): output flushed, exit handlers run, the stat cache closed by the
    command. Not while another thread runs (a normal exit waits for it), nor when flushing
    fails (a normal exit reports that)."""
    import atexit

    threading = sys.modules.get("threading")
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None or (threading is not None and threading.active_count() > 1):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        return
    run_exit_handlers()
    os._exit(code)


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
