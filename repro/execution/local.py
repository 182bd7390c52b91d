"""Run a stage as a local process: `sh -c CMD` in the stage's working dir, with its seed and
declared environment. Output is streamed line by line and kept in files (stored as objects by
the runner).

A stage never outlives the `repro` that started it:
- it gets its own process group, so Ctrl-C, SIGTERM and SIGHUP to repro (turned into
  KeyboardInterrupt by `repro.cli.main`) stop the whole command; processes a stage leaves
  behind in its group when its shell exits are stopped too;
- should repro be killed outright (SIGKILL), a watchdog process (`Watchdog` below) sees its
  pipe from repro close and stops every stage group still running. (The kernel's
  PR_SET_PDEATHSIG would reach only the direct child, the `sh` of `sh -c`, which dash does not
  replace by the command it runs, so the stage program itself would live on);
- it inherits the project lock's descriptor, so until its last process has exited no other
  repro command can take the project lock and record the half-written outputs as its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from repro.execution.base import ExecContext, ExecRequest, ExecResult


def _pump(stream, path: str, echo: Callable[[str], None] | None) -> None:
    """Keep the stage's output in `path` and echo it. A failing write (a full disk, a closed
    terminal) never kills the pump: it keeps draining the pipe, so the stage cannot block on
    it, and says once what could not be kept; the run then fails with one sentence at repro's
    next write (`repro.cli.main` names a full disk)."""
    lost: OSError | None = None
    try:
        f = open(path, "wb")  # noqa: SIM115 - closed below, where its error is caught too
    except OSError as exc:
        f, lost = None, exc
    for line in iter(stream.readline, b""):
        if f is not None:
            try:
                f.write(line)
            except OSError as exc:
                lost = exc
                with contextlib.suppress(OSError):
                    f.close()
                f = None
        if echo is not None:
            try:
                echo(line.decode(errors="replace"))
            except (OSError, ValueError):  # echo stream full or closed: keep the log going
                echo = None
    if f is not None:
        try:
            f.close()
        except OSError as exc:
            lost = exc
    stream.close()
    if lost is not None and echo is not None:
        with contextlib.suppress(OSError, ValueError):
            echo(
                f"repro: part of the stage's output could not be kept in {path} "
                f"({lost.strerror or lost}).",
            )


class LocalExecutor:
    """`sh -c CMD` in the stage's working dir, with this process's environment plus what the
    request declares (seed, declared variables, REPRO_STAGE)."""

    name = "local"

    def __init__(self, config: dict | None = None) -> None:
        import socket

        self.worker = socket.gethostname()

    def run(self, req: ExecRequest, ctx: ExecContext) -> ExecResult:
        from repro.pipeline import runlock

        if req.image:
            from repro.errors import SpecError

            raise SpecError(
                f"stage '{req.stage}' runs in an image; the 'local' executor runs no images "
                "(choose the 'container' executor, or drop 'image:')."
            )
        started = time.time()
        try:
            proc = subprocess.Popen(
                ["sh", "-c", req.cmd],
                cwd=ctx.cwd(req),
                env={**os.environ, **req.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                pass_fds=runlock.held_fds(),
            )
        except OSError as exc:
            return ExecResult(
                127,
                started,
                time.time(),
                f"cannot start the command ({exc.strerror})",
                worker=self.worker,
            )
        WATCHDOG.watch(f"g{proc.pid}")
        runlock.stage_started(req.stage, proc.pid)
        pumps = [
            threading.Thread(
                target=_pump, args=(proc.stdout, ctx.stdout_path, ctx.echo), daemon=True
            ),
            threading.Thread(
                target=_pump, args=(proc.stderr, ctx.stderr_path, ctx.echo), daemon=True
            ),
        ]
        for t in pumps:
            t.start()
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if ctx.cancel.is_set():
                        _stop(proc)
            _stop_leftovers(proc.pid)
        except BaseException:
            _stop(proc)
            raise
        finally:
            WATCHDOG.unwatch(f"g{proc.pid}")
            runlock.stage_finished(proc.pid)
        for t in pumps:
            t.join(timeout=2.0)
        if any(t.is_alive() for t in pumps):  # a process that left the group holds the output
            _stop_pipe_holders([proc.stdout, proc.stderr])
        for t in pumps:
            t.join()
        return ExecResult(code, started, time.time(), worker=self.worker)


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C, then SIGTERM, then SIGKILL to the stage's process group, until it is gone."""
    for sig, wait in ((signal.SIGINT, 3), (signal.SIGTERM, 3), (signal.SIGKILL, 3)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            _stop_leftovers(proc.pid)
            return
        except subprocess.TimeoutExpired:
            continue


def _stop_pipe_holders(streams: list) -> None:
    """Kill the processes that still hold the stage's output pipes once its group is gone:
    they left it (`setsid`, a daemon) and would hold the run, and the project lock whose
    descriptor they inherited, until they chose to exit. Only a process that inherited the
    stage's pipe can hold it, so only the stage's own descendants are found (Linux: /proc)."""
    wanted = set()
    for s in streams:
        try:
            wanted.add(f"pipe:[{os.fstat(s.fileno()).st_ino}]")
        except (OSError, ValueError, AttributeError):
            pass
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
    except OSError:
        return
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                held = os.readlink(f"/proc/{pid}/fd/{fd}") in wanted
            except OSError:
                continue
            if held:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                break


def _stop_leftovers(pgid: int, grace: float = 1.0) -> None:
    """Processes the stage started and left running in its group once its shell has exited:
    SIGTERM, then SIGKILL after `grace` seconds (they hold the stage's output pipes and the
    project lock, and a stage must not outlive its run)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


# The watchdog: a small Python process, in its own session (terminal signals meant for repro do
# not reach it), that reads lines from a pipe whose other end only this process holds.
# "+gPGID" / "-gPGID": a stage's process group started / ended; "+cID" / "-cID": a container.
# The pipe closes when repro exits, however it exits; the watchdog then stops what is still
# registered: SIGTERM to each group, SIGKILL a second later, and containers removed by force.
_WATCHDOG_CODE = r"""
import os, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
live = set()
for raw in sys.stdin.buffer:
    line = raw.decode(errors="replace").strip()
    if line[:1] == "+":
        live.add(line[1:])
    elif line[:1] == "-":
        live.discard(line[1:])
groups = [int(x[1:]) for x in live if x[:1] == "g" and x[1:].isdigit()]
for g in groups:
    try:
        os.killpg(g, signal.SIGTERM)
    except OSError:
        pass
for x in live:
    if x[:1] == "c":
        try:
            import subprocess
            subprocess.run(["docker", "rm", "-f", x[1:]], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        except Exception:
            pass
deadline = time.monotonic() + 1.0
while groups and time.monotonic() < deadline:
    time.sleep(0.05)
    alive = []
    for g in groups:
        try:
            os.killpg(g, 0)
            alive.append(g)
        except OSError:
            pass
    groups = alive
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
"""


class Watchdog:
    """Started on first use, once per process; see `_WATCHDOG_CODE`."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._failed = False
        self._lock = threading.Lock()

    def _send(self, line: str) -> None:
        with self._lock:
            if self._proc is None and not self._failed:
                self._start()
            if self._proc is None or self._proc.stdin is None:
                return
            try:
                self._proc.stdin.write(line.encode() + b"\n")
                self._proc.stdin.flush()
            except OSError:
                self._proc, self._failed = None, True

    def _start(self) -> None:
        import sys

        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-I", "-c", _WATCHDOG_CODE],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            self._failed = True

    def watch(self, key: str) -> None:
        """Stop `key` ("g" + process group id, or "c" + container id) should repro die."""
        self._send(f"+{key}")

    def unwatch(self, key: str) -> None:
        self._send(f"-{key}")


WATCHDOG = Watchdog()
