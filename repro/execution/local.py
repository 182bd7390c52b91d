"""Run a stage as a local process: `sh -c CMD` in the stage's working dir, with its seed and
declared environment. Output is streamed line by line and kept in files (stored as objects by
the runner). The process gets its own process group, so Ctrl-C stops the whole command."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from repro.execution.base import ExecRequest, ExecResult, echo_line


def _pump(stream, path: str, echo, prefix: str) -> None:
    with open(path, "wb") as f:
        for line in iter(stream.readline, b""):
            f.write(line)
            echo_line(echo, prefix, line.decode(errors="replace"))
    stream.close()


class LocalExecutor:
    def run(self, req: ExecRequest, cancel: threading.Event) -> ExecResult:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                ["sh", "-c", req.stage.cmd],
                cwd=req.cwd,
                env=req.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return ExecResult(127, 0.0, f"cannot start the command ({exc.strerror})")
        pumps = [
            threading.Thread(
                target=_pump, args=(proc.stdout, req.stdout_path, req.echo, req.prefix), daemon=True
            ),
            threading.Thread(
                target=_pump, args=(proc.stderr, req.stderr_path, req.echo, req.prefix), daemon=True
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
                    if cancel.is_set():
                        _stop(proc)
        except BaseException:
            _stop(proc)
            raise
        for t in pumps:
            t.join()
        return ExecResult(code, time.perf_counter() - t0)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 3), (signal.SIGTERM, 3), (signal.SIGKILL, 3)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
