"""Run a stage inside its image with the docker SDK.

The project is bind-mounted at the same path, the stage runs in its working dir as the invoking
user's uid:gid (so outputs are not root-owned), with its seed and declared env, and without a
network unless the stage says `network: true`. Output is streamed and kept like a local stage's;
the container is removed afterwards, and stopped when the run is cancelled (Ctrl-C, SIGTERM,
SIGHUP). Should repro be killed outright, the local executor's watchdog removes the container
(with the docker CLI), so a stage never outlives its run.
"""

from __future__ import annotations

import os
import threading
import time

from repro.errors import first_line
from repro.execution.base import ExecContext, ExecRequest, ExecResult
from repro.execution.images import ImageError, client


class ContainerExecutor:
    """Runs the stage in `req.image` (the digest repro.lock pinned) with the docker SDK."""

    name = "container"

    def __init__(self, config: dict | None = None) -> None:
        import socket

        self.host = socket.gethostname()

    def run(self, req: ExecRequest, ctx: ExecContext) -> ExecResult:
        import docker.errors

        image = req.image
        if not image:
            raise ImageError(
                f"stage '{req.stage}': the 'container' executor needs an 'image:' for it."
            )
        c = client()
        try:
            c.images.get(image)
        except docker.errors.ImageNotFound:
            try:
                c.images.pull(image)
            except Exception as exc:
                raise ImageError(
                    f"stage '{req.stage}': image '{image}' is not "
                    f"present and cannot be pulled ({first_line(exc)})."
                ) from None
        started = time.time()
        try:
            container = c.containers.create(
                image,
                command=["sh", "-c", req.cmd],
                working_dir=ctx.cwd(req),
                volumes={ctx.root: {"bind": ctx.root, "mode": "rw"}},
                user=f"{os.getuid()}:{os.getgid()}",
                environment=dict(req.env),
                network_mode="bridge" if req.network else "none",
                detach=True,
                labels={"repro.stage": req.stage},
            )
        except Exception as exc:
            raise ImageError(
                f"stage '{req.stage}': cannot create a container from "
                f"'{image}' ({first_line(exc)})."
            ) from None
        from repro.execution.local import WATCHDOG

        cancel = ctx.cancel
        WATCHDOG.watch(f"c{container.id}")
        stopper = threading.Thread(target=self._watch, args=(container, cancel), daemon=True)
        try:
            container.start()
            stopper.start()
            pumps = [
                threading.Thread(target=self._pump, args=(container, ctx, True), daemon=True),
                threading.Thread(target=self._pump, args=(container, ctx, False), daemon=True),
            ]
            for p in pumps:
                p.start()
            code = int(container.wait().get("StatusCode", 1))
            for p in pumps:
                p.join(timeout=30)
        finally:
            cancel_done = cancel.is_set()
            try:
                container.remove(force=True)
            except Exception:
                pass
            WATCHDOG.unwatch(f"c{container.id}")
        if cancel_done:
            raise KeyboardInterrupt
        worker = f"{self.host}/{container.id[:12]}"
        return ExecResult(code, started, time.time(), worker=worker)

    @staticmethod
    def _pump(container, ctx: ExecContext, stdout: bool) -> None:
        """Follow one of the container's streams into its log file (and the terminal)."""
        path = ctx.stdout_path if stdout else ctx.stderr_path
        echo = ctx.echo or (lambda _line: None)
        pending = b""
        with open(path, "wb") as f:
            for chunk in container.logs(stdout=stdout, stderr=not stdout, stream=True, follow=True):
                f.write(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    echo(line.decode(errors="replace"))
            if pending:
                echo(pending.decode(errors="replace"))

    @staticmethod
    def _watch(container, cancel: threading.Event) -> None:
        while not cancel.wait(0.2):
            try:
                container.reload()
                if container.status in ("exited", "dead"):
                    return
            except Exception:
                return
        try:
            container.stop(timeout=3)
        except Exception:
            pass
