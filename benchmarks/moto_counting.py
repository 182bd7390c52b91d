"""moto's S3 server on loopback, counting every request and every byte at the server.

    python -m benchmarks.moto_counting --port PORT     # the server (a child of the harness)

Counting at the server sees what any client does (repro through fsspec/s3fs, DVC through its
own s3fs), so the two tools are compared on the same meter: requests by HTTP method, request
and response body bytes, header bytes apart. `GET /__counts` answers the counters as JSON and
`GET /__counts/reset` answers them and sets them to zero; neither is counted.
The harness uses `CountingMoto` (a context manager) and never imports moto itself.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

COUNTS_PATH = "/__counts"


@dataclass
class Counts:
    """What crossed the wire: requests (by method), body bytes each way, header bytes."""

    requests: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0  # request bodies (uploads)
    bytes_out: int = 0  # response bodies (downloads, listings)
    header_bytes: int = 0

    @property
    def body_bytes(self) -> int:
        return self.bytes_in + self.bytes_out


class _CountingInput:
    """wsgi.input that counts what the app reads (chunked uploads have no Content-Length)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.n = 0

    def read(self, *a: Any) -> bytes:
        b = self.raw.read(*a)
        self.n += len(b)
        return b

    def readline(self, *a: Any) -> bytes:
        b = self.raw.readline(*a)
        self.n += len(b)
        return b

    def __iter__(self) -> Iterator[bytes]:
        for b in self.raw:
            self.n += len(b)
            yield b

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class CountingMiddleware:
    """WSGI middleware around moto's app: one lock-guarded `Counts` for the whole server."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.counts = Counts()

    def _answer(self, environ: dict, start_response: Callable) -> list[bytes]:
        with self.lock:
            body = json.dumps(asdict(self.counts)).encode()
            if environ.get("PATH_INFO", "").endswith("/reset"):
                self.counts = Counts()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(COUNTS_PATH):
            return self._answer(environ, start_response)
        return self._counted(environ, start_response)

    def _counted(self, environ: dict, start_response: Callable) -> Iterator[bytes]:
        counting = _CountingInput(environ["wsgi.input"])
        environ["wsgi.input"] = counting
        header_bytes = [
            sum(len(k) + len(str(v)) for k, v in environ.items() if k.startswith("HTTP_"))
        ]

        def counted_start(status: str, headers: list, *a: Any) -> Any:
            header_bytes[0] += len(status) + sum(len(k) + len(v) for k, v in headers)
            return start_response(status, headers, *a)

        method = environ.get("REQUEST_METHOD", "?")
        settled = [False]

        def settle() -> None:
            """Count the request once, before its last byte leaves: a client that reads the
            counters right after a response must already see it."""
            if settled[0]:
                return
            settled[0] = True
            declared = int(environ.get("CONTENT_LENGTH") or 0)
            with self.lock:
                c = self.counts
                c.requests += 1
                c.by_method[method] = c.by_method.get(method, 0) + 1
                c.bytes_in += max(declared, counting.n)
                c.header_bytes += header_bytes[0]

        inner = self.app(environ, counted_start)
        try:
            for chunk in inner:
                settle()
                if method != "HEAD":
                    with self.lock:
                        self.counts.bytes_out += len(chunk)
                yield chunk
            settle()
        finally:
            settle()
            if hasattr(inner, "close"):
                inner.close()


def serve(host: str, port: int) -> None:
    """moto's own server (as `python -m moto.server` builds it), wrapped in the counter."""
    from moto.server import (
        DomainDispatcherApplication,
        MotoRequestHandler,  # type: ignore[attr-defined]
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    os.environ.setdefault("MOTO_PORT", str(port))
    run_simple(
        host,
        port,
        CountingMiddleware(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CountingMoto:
    """The counting server as a child process of the harness, on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.moto_counting", "--port", str(self.port)],
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while True:
            try:
                self.counts()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError("the counting moto server did not start") from None
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _get(self, path: str) -> Counts:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return Counts(**json.loads(r.read()))

    def counts(self) -> Counts:
        return self._get(COUNTS_PATH)

    def reset(self) -> Counts:
        """The counts so far, and zero from now on."""
        return self._get(COUNTS_PATH + "/reset")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> CountingMoto:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    serve(a.host, a.port)


if __name__ == "__main__":
    main()
