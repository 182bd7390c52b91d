"""Alerts end to end: real HTTP servers on loopback (that check the HMAC), real programs as
command sinks, the real CLI as a subprocess. Nothing is mocked."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from repro.alerts import alert_event, fire, pending, retry
from tests.conftest import one_error, run_cli, snapshot_tree, write

SECRET = "k3y-only-in-the-environment"


class Hook:
    """A webhook receiver on loopback: records each POST (path, headers, raw body) and whether
    its `X-Repro-Signature` is the HMAC-SHA256 of the raw body under `secret`. `delay` makes it
    answer late; `listen=False` binds the port but refuses connections until `start()`."""

    def __init__(self, secret: str | None = None, delay: float = 0.0, listen: bool = True):
        self.secret, self.delay, self.requests = secret, delay, []
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hook.delay:
                    hook.release.wait(hook.delay)
                hook.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.daemon_threads = True
        self.server.server_bind()  # the port is ours; nobody answers on it until start()
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread: threading.Thread | None = None
        if listen:
            self.start()

    def start(self) -> None:
        self.server.server_activate()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        if self.thread is not None:
            self.server.shutdown()
        self.server.server_close()

    def events(self, path: str | None = None) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests if path in (None, r["path"])]

    def signed(self, r: dict) -> bool:
        want = "sha256=" + hmac.new(SECRET.encode(), r["body"], hashlib.sha256).hexdigest()
        return hmac.compare_digest(r["headers"].get("X-Repro-Signature", ""), want)


@pytest.fixture
def hooks():
    made: list[Hook] = []

    def make(**kw) -> Hook:
        made.append(Hook(**kw))
        return made[-1]

    yield make
    for h in made:
        h.stop()


def add_alerts(root: str, text: str) -> None:
    with open(os.path.join(root, ".repro", "config.toml"), "a") as f:
        f.write("\n" + text)


def entry(on: str, kind: str, url: str = "", **extra) -> str:
    lines = [f'on = "{on}"', f'kind = "{kind}"'] + ([f'url = "{url}"'] if url else [])
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "[[alerts]]\n" + "\n".join(lines) + "\n"


PIPELINE = """\
stages:
  train:
    cmd: python3 train.py
    deps: [train.py]
    params: [lr]
    outs: [model.txt]
"""


def pipeline(root: str) -> None:
    write(root, "repro.yaml", PIPELINE)
    write(root, "params.yaml", "lr: 1\n")
    write(root, "train.py", "open('model.txt', 'w').write('model\\n')\n")


def queued(root: str) -> list[Path]:
    folder = Path(root, ".repro", "alerts", "pending")
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


# -- the observer, through `repro run` --------------------------------------------------------
def test_run_fires_minor_major_and_failure_to_the_entries_that_want_them(project, hooks):
    hook = hooks()
    root = project.root
    pipeline(root)
    add_alerts(
        root,
        "".join(entry(on, "webhook", f"{hook.url}/{on}") for on in ("major", "minor", "failure"))
        + entry("any", "webhook", f"{hook.url}/any"),
    )
    first = run_cli(["run", "--json"], root, check=True).json()
    assert hook.requests == []  # a first run has nothing before it to differ from

    write(root, "params.yaml", "lr: 2\n")
    second = run_cli(["run", "--json"], root, check=True).json()
    assert sorted(r["path"] for r in hook.requests) == ["/any", "/minor"]
    ev = hook.events("/minor")[0]
    assert (ev["event"], ev["v"], ev["severity"], ev["source"]) == ("alert", 1, "minor", "run")
    assert (ev["snapshot"], ev["previous"]) == (second["snapshot"], first["snapshot"])
    assert ev["run_id"] == second["run_id"] and ev["project"] == "proj"
    assert ev["changes"] == [
        {
            "stage": "train",
            "kind": "params",
            "target": "params.yaml:lr",
            "old": 1,
            "new": 2,
            "severity": "minor",
        }
    ]
    assert "params.yaml:lr" in ev["reasons"][0] and ev["time"].endswith("Z")

    hook.requests.clear()
    write(root, "train.py", "open('model.txt', 'w').write('model v2\\n')\n")
    third = run_cli(["run", "--json"], root, check=True).json()
    assert sorted(r["path"] for r in hook.requests) == ["/any", "/major", "/minor"]
    ev = hook.events("/major")[0]
    assert ev["severity"] == "major" and ev["previous"] == second["snapshot"]
    assert ev["snapshot"] == third["snapshot"]
    assert {"stage": "train", "kind": "code", "target": "train.py"}.items() <= ev["changes"][
        0
    ].items()

    hook.requests.clear()
    write(root, "train.py", "import sys; sys.exit(3)\n")
    r = run_cli(["run"], root)
    assert r.code != 0
    assert sorted(x["path"] for x in hook.requests) == ["/any", "/failure"]
    ev = hook.events("/failure")[0]
    assert ev["severity"] == "failure" and ev["stages"] == ["train"]
    assert any("stage 'train' failed with exit code 3" in s for s in ev["reasons"]), ev
    assert queued(root) == []


def test_down_sink_is_queued_then_retry_delivers_signed_and_empties_the_queue(project, hooks):
    hook = hooks(secret=SECRET, listen=False)  # the port refuses connections for now
    root = project.root
    pipeline(root)
    add_alerts(root, entry("minor", "webhook", hook.url + "/h", secret_env="HOOK_KEY", timeout=1))
    env = {"HOOK_KEY": SECRET}
    run_cli(["run"], root, env=env, check=True)
    write(root, "params.yaml", "lr: 5\n")
    t0 = time.monotonic()
    r = run_cli(["run", "--json"], root, env=env)
    assert r.code == 0, r.err  # an alert that cannot go out never fails the run
    assert time.monotonic() - t0 < 8
    warns = [ln for ln in r.err.splitlines() if ln.startswith("warning:")]
    assert len(warns) == 1 and "entry 1" in warns[0] and "repro alerts retry" in warns[0], r.err
    files = queued(root)
    assert len(files) == 1
    kept = json.loads(files[0].read_text())
    assert kept["entry"] == 1 and kept["attempts"] >= 1 and "connect" in kept["last_error"]
    assert kept["event"]["snapshot"] == r.json()["snapshot"]
    assert SECRET not in files[0].read_text()  # the key never goes in a file
    listed = run_cli(["alerts", "pending", "--json"], root, check=True).json()
    assert [p["id"] for p in listed] == [files[0].stem]

    hook.start()
    done = run_cli(["alerts", "retry", "--json"], root, env=env, check=True).json()
    assert [d["ok"] for d in done] == [True]
    assert len(hook.requests) == 1 and hook.signed(hook.requests[0])
    assert json.loads(hook.requests[0]["body"]) == kept["event"]
    assert queued(root) == []
    assert run_cli(["alerts", "pending", "--json"], root, check=True).json() == []


def test_a_slow_endpoint_does_not_hold_the_run_past_the_budget(project, hooks):
    hook = hooks(delay=60)  # accepts, then answers a minute later
    root = project.root
    pipeline(root)
    add_alerts(
        root,
        "[observe.alerts]\nbudget = 1.5\n\n"
        + entry("any", "webhook", hook.url, timeout=30, retries=10),
    )
    run_cli(["run"], root, check=True)
    write(root, "params.yaml", "lr: 3\n")
    t0 = time.monotonic()
    r = run_cli(["run"], root)
    took = time.monotonic() - t0
    assert r.code == 0, r.err
    assert took < 6, took
    assert "no answer within" in r.err and len(queued(root)) == 1


def test_missing_secret_is_queued_not_sent_unsigned(project, hooks):
    hook = hooks(secret=SECRET)
    root = project.root
    config = {"alerts": [{"on": "any", "kind": "webhook", "url": hook.url, "secret_env": "NOPE_K"}]}
    os.environ.pop("NOPE_K", None)
    event = alert_event("major", "a" * 32, None, "r1", [], ["code changed"], "check")
    (d,) = fire(root, config, event, budget=3)
    assert not d.ok and d.attempts == 0 and "NOPE_K" in d.warning
    assert hook.requests == []  # never sent unsigned
    assert [p.id for p in pending(root)] == [d.pending]

    os.environ["NOPE_K"] = SECRET
    try:
        (again,) = retry(root, config, budget=3)
    finally:
        del os.environ["NOPE_K"]
    assert again.ok and hook.signed(hook.requests[0]) and pending(root) == []
    assert json.loads(hook.requests[0]["body"])["source"] == "check"


# -- sinks and `repro alerts test` --------------------------------------------------------------
def test_alerts_test_sends_slack_webhook_and_command_sinks(project, hooks, tmp_path):
    hook = hooks(secret=SECRET)
    root = project.root
    got = tmp_path / "stdin.json"
    prog = f"import sys; open({str(got)!r}, 'w').write(sys.stdin.read())"
    add_alerts(
        root,
        entry("major", "webhook", hook.url + "/w", secret_env="HOOK_KEY")
        + entry("any", "slack", hook.url + "/slack")
        + entry("major", "command", command=[sys.executable, "-c", prog])
        + entry("failure", "webhook", hook.url + "/fail"),
    )
    r = run_cli(["alerts", "test", "--on", "major", "--json"], root, env={"HOOK_KEY": SECRET})
    assert r.code == 0, r.err
    assert [(d["entry"], d["ok"]) for d in r.json()] == [(1, True), (2, True), (3, True)]
    paths = sorted(x["path"] for x in hook.requests)
    assert paths == ["/slack", "/w"]  # entry 4 wants failures only
    webhook = next(x for x in hook.requests if x["path"] == "/w")
    assert hook.signed(webhook) and webhook["headers"]["Content-Type"] == "application/json"
    assert json.loads(webhook["body"])["source"] == "test"
    slack = hook.events("/slack")[0]
    assert set(slack) == {"text", "blocks"} and "major" in slack["text"]
    assert [b["type"] for b in slack["blocks"]] == ["header", "section", "context"]
    assert all(isinstance(b.get("text", {}).get("text", ""), str) for b in slack["blocks"])
    ev = json.loads(got.read_text())
    assert (ev["event"], ev["severity"], ev["source"]) == ("alert", "major", "test")
    assert queued(root) == []


def test_alerts_test_to_a_dead_sink_fails_and_queues_nothing(project, hooks):
    dead = hooks(listen=False)
    root = project.root
    add_alerts(root, entry("any", "webhook", dead.url, timeout=1, retries=0))
    r = run_cli(["alerts", "test"], root)
    assert "could not be delivered" in one_error(r)
    assert "warning: alert to [[alerts]] entry 1" in r.err
    assert queued(root) == []


def test_failing_command_sink_is_retried_then_queued(project, tmp_path):
    count = tmp_path / "count"
    prog = f"import sys; open({str(count)!r}, 'a').write('x'); sys.exit(4)"
    config = {
        "alerts": [
            {
                "on": "minor",
                "kind": "command",
                "command": [sys.executable, "-c", prog],
                "retries": 2,
            }
        ]
    }
    event = alert_event("major", None, None, None, [], ["x"], "check")
    (d,) = fire(project.root, config, event, budget=5)
    assert not d.ok and d.attempts == 3 and "exited with code 4" in d.error
    assert count.read_text() == "xxx" and len(pending(project.root)) == 1
    assert fire(project.root, config, {**event, "severity": "failure"}) == []  # 'minor' skips it


# -- bad configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "says"),
    [
        (entry("sometimes", "webhook", "http://127.0.0.1:9"), "key 'on'"),
        (entry("major", "email", "http://127.0.0.1:9"), "key 'kind'"),
        (entry("major", "webhook", "file:///etc/passwd"), "http(s) URL"),
        (entry("major", "slack"), "key 'url'"),
        (entry("major", "command", command='notify "unclosed'), "key 'command'"),
        (entry("major", "webhook", "http://h", secret_env="not a name"), "secret_env"),
        (entry("major", "webhook", "http://h", retries=-1), "key 'retries'"),
        (entry("major", "webhook", "http://h", timeout="soon"), "key 'timeout'"),
    ],
)
def test_bad_alerts_config_is_one_sentence_and_changes_nothing(project, text, says):
    root = project.root
    pipeline(root)
    add_alerts(root, entry("any", "webhook", "http://127.0.0.1:9") + text)
    before = snapshot_tree(root, skip=(".git",))
    for args in (["run"], ["alerts", "pending"]):
        line = one_error(run_cli(args, root))
        assert ".repro/config.toml" in line and "[[alerts]] entry 2" in line and says in line
    assert snapshot_tree(root, skip=(".git",)) == before


def test_a_failed_stage_check_fires_a_failure_alert_and_the_run_still_succeeds(project, hooks):
    hook = hooks()
    root = project.root
    pipeline(root)
    text = PIPELINE + (
        "    observe:\n      - name: smoke test\n"
        "        cmd: python3 -c \"raise SystemExit('too small')\"\n"
        "        on_fail: warn\n"
    )
    write(root, "repro.yaml", text)
    add_alerts(root, entry("failure", "webhook", hook.url))
    r = run_cli(["run", "--json"], root)
    assert r.code == 0, r.err  # a warning check keeps the result
    (ev,) = hook.events()
    assert ev["severity"] == "failure" and ev["stages"] == ["train"]
    assert any("check 'smoke test'" in s and "failed" in s for s in ev["reasons"]), ev


def test_retry_finds_its_sink_after_a_reorder_and_keeps_no_url_token(project, hooks):
    hook = hooks(listen=False)
    root = project.root
    slack = {"on": "any", "kind": "slack", "url": hook.url + "/services/T0/B0/tok3n", "retries": 0}
    event = alert_event("minor", None, None, "r9", [], ["params changed"], "run")
    (d,) = fire(root, {"alerts": [slack]}, event, budget=3)
    assert not d.ok and d.entry == 1
    (kept,) = queued(root)
    assert "tok3n" not in kept.read_text()  # a Slack webhook's path is its token

    hook.start()
    other = {"on": "any", "kind": "webhook", "url": hook.url + "/other"}
    (again,) = retry(root, {"alerts": [other, slack]}, budget=3)
    assert again.ok and again.entry == 2
    assert [r["path"] for r in hook.requests] == ["/services/T0/B0/tok3n"]
    assert queued(root) == []


def test_an_endpoint_dripping_its_answer_is_given_up_on_at_the_budget(project):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip() -> None:  # a byte every 0.3 s: no single read ever times out
        conn, _ = listener.accept()
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                if stop.wait(0.3):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    threading.Thread(target=drip, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = {"alerts": [{"on": "any", "kind": "webhook", "url": url, "timeout": 30}]}
    t0 = time.monotonic()
    try:
        (d,) = fire(
            project.root, config, alert_event("major", None, None, None, [], [], "run"), budget=1
        )
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - t0 < 3.5
    assert not d.ok and "budget ran out" in d.error and len(queued(project.root)) == 1
