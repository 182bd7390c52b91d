"""`repro import-url`, `repro update`, `repro status --external`: external data, frozen until
updated, from an http server on loopback (with ETags) and from S3 (moto), through the real CLI."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import AWS_ENV, new_bucket, one_error, run_cli, untouched


class _Files:
    """What the server serves (path -> bytes) and how many GETs it answered."""

    def __init__(self) -> None:
        self.content: dict[str, bytes] = {}
        self.gets = 0


def _handler(files: _Files):
    class Handler(BaseHTTPRequestHandler):
        def _head(self) -> bytes | None:
            body = files.content.get(self.path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", '"' + hashlib.md5(body).hexdigest() + '"')
            self.end_headers()
            return body

        def do_HEAD(self) -> None:
            self._head()

        def do_GET(self) -> None:
            body = self._head()
            if body is not None:
                files.gets += 1
                self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def http():
    files = _Files()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    files.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield files
    server.shutdown()
    server.server_close()


def _lock(root: str) -> dict:
    return json.loads((Path(root) / "repro.lock").read_text())


def test_import_url_http_frozen_then_update(project, cli, http):
    http.content["/data.xml"] = b"<rows>1</rows>\n"
    url = f"{http.url}/data.xml"
    r = cli("import-url", url, "data/data.xml", "--json", ok=True)
    assert r.json()["path"] == "data/data.xml"
    root = Path(project.root)
    assert (root / "data/data.xml").read_bytes() == b"<rows>1</rows>\n"
    lock = _lock(project.root)
    src = lock["external"]["data/data.xml"]
    assert src["url"] == url and src["size"] == 15
    assert src["etag"] == '"' + hashlib.md5(b"<rows>1</rows>\n").hexdigest() + '"'
    assert lock["data"]["data/data.xml"]["hash"] == src["hash"]
    assert "data/data.xml" in (root / ".gitignore").read_text()

    # Frozen: a stage reading it runs without fetching again, even after the source changed.
    cli("stage", "add", "count", "--cmd", "wc -c < data/data.xml > n.txt",
        "-d", "data/data.xml", "-o", "n.txt", ok=True)  # fmt: skip
    http.content["/data.xml"] = b"<rows>1</rows><rows>2</rows>\n"
    cli("run", ok=True)
    assert http.gets == 1
    assert (root / "n.txt").read_text().strip() == "15"
    assert cli("status", "--json", ok=True).json()["data"][0]["state"] == "up-to-date"

    # status --external: asks (HEAD), downloads nothing, reports kind `external`.
    r = cli("status", "--external", "--json", "--exit-code")
    assert r.code == 1, r.err
    data = r.json()["data"][0]
    assert data["state"] == "stale"
    assert data["reasons"][0]["kind"] == "external"
    assert data["reasons"][0]["target"] == "data/data.xml"
    assert data["reasons"][0]["new"]["size"] == 29
    assert http.gets == 1
    plain = cli("status", "--external")
    assert "external: data/data.xml" in plain.out

    # update: fetches, says what changed; the stage is stale with its data changed.
    r = cli("update", "data/data.xml", ok=True)
    assert ": changed (" in r.out and "size 15 -> 29" in r.out
    assert (root / "data/data.xml").read_bytes() == b"<rows>1</rows><rows>2</rows>\n"
    assert _lock(project.root)["external"]["data/data.xml"]["size"] == 29
    assert cli("status", "--external", "--exit-code").code == 1  # `count` must rerun
    cli("run", ok=True)
    assert (root / "n.txt").read_text().strip() == "29"

    # update again, source unchanged: says so, the workspace and lock stay.
    before = (root / "repro.lock").read_text()
    r = cli("update", "data/data.xml", "--json", ok=True)
    assert r.json()[0]["changed"] is False and r.json()[0]["changes"] == []
    assert json.loads(before)["data"] == _lock(project.root)["data"]
    assert cli("status", "--external", "--exit-code").code == 0


def test_import_url_refuses_bad_input(project, cli, http, outside):
    root = Path(project.root)
    r = cli("import-url", f"{http.url}/nope.csv", "nope.csv")
    assert "404" in one_error(r) or "not found" in one_error(r).lower()
    assert not (root / "nope.csv").exists()
    lock = root / "repro.lock"
    assert not lock.exists() or "external" not in lock.read_text()
    assert "scheme 'gopher'" in one_error(cli("import-url", "gopher://x/y", "y"))
    http.content["/a"] = b"a"
    assert "outside the project" in one_error(cli("import-url", f"{http.url}/a", "../a"))
    r = cli("import-url", f"{http.url}/a", "a.txt", "-o", "secret=x")
    assert "credential" in one_error(r)
    assert not (root / "a.txt").exists()
    cli("stage", "add", "mk", "--cmd", "echo 1 > out.txt", "-o", "out.txt", ok=True)
    assert "output of stage 'mk'" in one_error(cli("import-url", f"{http.url}/a", "out.txt"))
    assert not (root / "out.txt").exists() and http.gets == 0
    # --force over workspace content: it is saved first, so restore brings it back.
    (root / "mine.txt").write_text("my own")
    assert "--force" in one_error(cli("import-url", f"{http.url}/a", "mine.txt"))
    cli("import-url", f"{http.url}/a", "mine.txt", "--force", ok=True)
    assert (root / "mine.txt").read_text() == "a"
    saved = cli("restore", "--json", ok=True).out
    assert "mine.txt" in saved
    assert untouched(outside)


def test_hostile_url_in_lock_refused(project, cli, http, outside):
    """A repro.lock from git may name any URL: file:// outside the project and unknown schemes
    are refused by update and status --external, and nothing changes."""
    http.content["/a.txt"] = b"aaa"
    cli("import-url", f"{http.url}/a.txt", "a.txt", ok=True)
    root = Path(project.root)
    lock = _lock(project.root)
    hostile = (f"file://{outside}/victim.txt", str(outside / "victim.txt"), "ftp://127.0.0.1/a")
    for url in hostile:
        lock["external"]["a.txt"]["url"] = url
        (root / "repro.lock").write_text(json.dumps(lock))
        for args in (["update", "a.txt"], ["status", "--external"]):
            msg = one_error(cli(*args))
            assert "repro.lock" in msg and "refusing" in msg, msg
        assert (root / "a.txt").read_bytes() == b"aaa"
    # A source recorded for a path that is no tracked data: the lock itself is refused.
    lock["external"] = {"../x": {"url": f"{http.url}/a.txt"}}
    (root / "repro.lock").write_text(json.dumps(lock))
    assert "repro.lock" in one_error(cli("status", "--external"))
    assert untouched(outside)


def test_import_local_file_given_now(project, cli, tmp_path):
    """A local source outside the project is allowed when given on the command line now."""
    src = tmp_path / "src.csv"
    src.write_text("x\n1\n")
    cli("import-url", f"file://{src}", "src.csv", ok=True)
    assert (Path(project.root) / "src.csv").read_text() == "x\n1\n"
    src.write_text("x\n1\n2\n")
    # ...but not from repro.lock later: update refuses the recorded out-of-project path.
    assert "outside the project" in one_error(cli("update", "src.csv"))
    # A source inside the project is recorded relative to it, and updates from any folder.
    root = Path(project.root)
    (root / "incoming").mkdir()
    (root / "incoming/feed.csv").write_text("v1\n")
    cli("import-url", str(root / "incoming/feed.csv"), "feed.csv", ok=True)
    assert _lock(project.root)["external"]["feed.csv"]["url"] == "incoming/feed.csv"
    (root / "incoming/feed.csv").write_text("v2!\n")
    r = run_cli(["update", "../feed.csv"], root / "incoming", check=True)
    assert ": changed (" in r.out and "size 3 -> 4" in r.out
    assert (root / "feed.csv").read_text() == "v2!\n"


def test_import_url_s3(project, cli, s3_server):
    import s3fs

    bucket = new_bucket(s3_server)
    fs = s3fs.S3FileSystem(endpoint_url=s3_server.url, key="testing", secret="testing")
    fs.pipe(f"{bucket}/raw.csv", b"a,b\n1,2\n")
    env = {**AWS_ENV}
    opt = f"endpoint_url={s3_server.url}"
    cli("import-url", f"s3://{bucket}/raw.csv", "raw.csv", "-o", opt, env=env, ok=True)
    src = _lock(project.root)["external"]["raw.csv"]
    assert src["etag"].strip('"') == hashlib.md5(b"a,b\n1,2\n").hexdigest()
    assert src["options"] == {"endpoint_url": s3_server.url}
    assert cli("status", "--external", "--exit-code", env=env).code == 0
    fs.pipe(f"{bucket}/raw.csv", b"a,b\n1,2\n3,4\n")
    r = cli("status", "--external", "--json", env=env)
    assert r.json()["data"][0]["reasons"][0]["kind"] == "external"
    r = cli("update", "raw.csv", env=env, ok=True)
    assert ": changed (" in r.out and "etag" in r.out
    assert (Path(project.root) / "raw.csv").read_bytes() == b"a,b\n1,2\n3,4\n"
