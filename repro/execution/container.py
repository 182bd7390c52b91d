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
from repro.execution.base import ExecRequest, ExecResult, echo_line
from repro.execution.images import ImageError, client
from repro.lockfile import Lock


class ContainerExecutor:
    def __init__(self, lock: Lock) -> None:
        self.lock = lock

    def image_for(self, req: ExecRequest) -> str:
        ref = req.stage.image or ""
        return self.lock.images.get(ref, ref)

    def run(self, req: ExecRequest, cancel: threading.Event) -> ExecResult:
        import docker.errors

        stage = req.stage
        image = self.image_for(req)
        c = client()
        try:
            c.images.get(image)
        except docker.errors.ImageNotFound:
            try:
                c.images.pull(image)
            except Exception as exc:
                raise ImageError(
                    f"stage '{stage.name}': image '{stage.image}' ({image}) is not "
                    f"present and cannot be pulled ({first_line(exc)})."
                ) from None
        env = {
            k: v
            for k, v in req.env.items()
            if k in stage.env or k.startswith("REPRO_") or k == "PYTHONHASHSEED"
        }
        t0 = time.perf_counter()
        try:
            container = c.containers.create(
                image,
                command=["sh", "-c", stage.cmd],
                working_dir=req.cwd,
                volumes={req.root: {"bind": req.root, "mode": "rw"}},
                user=f"{os.getuid()}:{os.getgid()}",
                environment=env,
                network_mode="bridge" if stage.network else "none",
                detach=True,
                labels={"repro.stage": stage.name},
            )
        except Exception as exc:
            raise ImageError(
                f"stage '{stage.name}': cannot create a container from "
                f"'{stage.image}' ({first_line(exc)})."
            ) from None
        from repro.execution.local import WATCHDOG

        WATCHDOG.watch(f"c{container.id}")
        stopper = threading.Thread(target=self._watch, args=(container, cancel), daemon=True)
        try:
            container.start()
            stopper.start()
            pumps = [
                threading.Thread(target=self._pump, args=(container, req, True), daemon=True),
                threading.Thread(target=self._pump, args=(container, req, False), daemon=True),
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
        return ExecResult(code, time.perf_counter() - t0)

    @staticmethod
    def _pump(container, req: ExecRequest, stdout: bool) -> None:
        """Follow one of the container's streams into its log file (and the terminal)."""
        path = req.stdout_path if stdout else req.stderr_path
        pending = b""
        with open(path, "wb") as f:
            for chunk in container.logs(stdout=stdout, stderr=not stdout, stream=True, follow=True):
                f.write(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    echo_line(req.echo, req.prefix, line.decode(errors="replace"))
            if pending:
                echo_line(req.echo, req.prefix, pending.decode(errors="replace"))

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
