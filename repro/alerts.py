"""Alerts: tell people when a state changes or a run fails (DESIGN.md, "Alerts").

`[[alerts]]` entries in `.repro/config.toml` each pick the severities they want (`on`) and a
sink: `webhook` (POST the JSON event, optionally signed with HMAC-SHA256 from a key in an
environment variable), `slack` (an incoming-webhook payload) or `command` (a program given the
event on stdin). The event is built by `alert_event`, sent by `fire`.

Delivery never holds a run for long: each sink gets a timeout per attempt and retries with
exponential backoff, all within one time budget, sinks in parallel. A delivery that still fails
is not lost: it is written to `.repro/alerts/pending/<id>.json` (the event, the sink's entry
number and what it sends to, the attempts and the last error; never a key) and `retry`
re-sends it. This module sits low in the layers (no Project): callers pass the project root
and its config. Heavy modules (urllib, subprocess, hmac) are imported where they are used.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("major", "minor", "failure")
ON_VALUES = ("major", "minor", "failure", "any")
KINDS = ("webhook", "slack", "command")
SOURCES = ("run", "check", "test")
ENTRY_KEYS = ("on", "kind", "url", "command", "secret_env", "timeout", "retries")
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 2
MAX_RETRIES = 10
DEFAULT_BUDGET = 10.0
PENDING = (".repro", "alerts", "pending")
SIGNATURE_HEADER = "X-Repro-Signature"
MAX_PENDING_BYTES = 4 << 20
_FIRST_BACKOFF = 0.5


@dataclass
class Delivery:
    """What became of one alert sent to one `[[alerts]]` entry (`entry` counts from 1)."""

    entry: int
    kind: str
    target: str
    ok: bool
    attempts: int = 0
    error: str | None = None
    pending: str | None = None  # the pending file's id when it was queued
    warning: str | None = None  # a `warning:` line for the user (without the prefix)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Pending:
    """A delivery that failed and waits in `.repro/alerts/pending/` for `retry`."""

    id: str
    entry: int
    sink: dict[str, Any]
    event: dict[str, Any]
    attempts: int
    last_error: str
    queued: str
    tried: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


class _Failed(Exception):
    """One attempt failed; `retry` says whether another attempt could succeed."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


# -- the event -----------------------------------------------------------------------------
def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_event(
    severity: str,
    snapshot: str | None,
    previous: str | None,
    run_id: str | None,
    changes: list[dict[str, Any]],
    reasons: list[str],
    source: str,
    project: str = "",
) -> dict[str, Any]:
    """The JSON event every sink gets. `changes` are `diff --json` changes, each with the
    `stage` it belongs to (None for tracked data); `reasons` are sentences for people;
    `project` (the project folder's name) is filled in by `fire` when left empty."""
    if severity not in SEVERITIES:
        raise ValueError(f"alert severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    return {
        "event": "alert",
        "v": 1,
        "severity": severity,
        "snapshot": snapshot,
        "previous": previous,
        "run_id": run_id,
        "changes": list(changes),
        "reasons": list(reasons),
        "source": source,
        "time": _now(),
        "project": project,
    }


def matches(on: str, severity: str) -> bool:
    """Whether an entry with `on` wants an alert of `severity` (`minor` includes major)."""
    if on == "any":
        return True
    if on == "minor":
        return severity in ("minor", "major")
    return on == severity


def body_bytes(event: dict[str, Any]) -> bytes:
    """The raw body a webhook gets (and its HMAC covers): compact, sorted keys, UTF-8."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode()


def signature(key: bytes, body: bytes) -> str:
    """The `X-Repro-Signature` header value: `sha256=<hex HMAC-SHA256 of the raw body>`."""
    import hashlib
    import hmac

    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


# -- the entries -----------------------------------------------------------------------------
def entries(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The `[[alerts]]` tables of a (validated) config."""
    found = config.get("alerts") or []
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def sink_of(entry: dict[str, Any]) -> dict[str, Any]:
    """What an entry sends to, as kept in a pending file: its kind, its target as messages show
    it (no URL path: a Slack webhook's path is its token) and a fingerprint of the whole sink
    (kind, URL or command, secret_env's name), so `retry` finds it again after a reorder."""
    import hashlib

    kind = entry.get("kind")
    target = entry.get("command") if kind == "command" else entry.get("url")
    whole = json.dumps([kind, target, entry.get("secret_env")], sort_keys=True, default=str)
    return {
        "kind": kind,
        "target": _shown(entry),
        "fingerprint": hashlib.sha256(whole.encode()).hexdigest()[:32],
    }


def _shown(entry: dict[str, Any]) -> str:
    """An entry's target for messages: a URL without its path and query (a Slack webhook's
    path is its token), or the program a command runs."""
    if entry.get("kind") == "command":
        argv = command_argv(entry.get("command"))
        return argv[0] if argv else "?"
    from urllib.parse import urlsplit

    parts = urlsplit(str(entry.get("url", "")))
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}"


def command_argv(command: Any) -> list[str]:
    """A `command` entry's argv: a list as it is, a string split as a shell would (no shell)."""
    import shlex

    if isinstance(command, list):
        return [str(a) for a in command]
    try:
        return shlex.split(str(command))
    except ValueError:
        return []


def url_problem(url: Any) -> str | None:
    """Why `url` cannot be an alert URL (only http and https, with a host), or None."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url:
        return "must be an http(s) URL"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http(s) URL"
    if not parts.hostname:
        return "has no host"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):  # http.client would echo the path
        return "contains whitespace or control characters"
    return None


def redacted(url: Any) -> str:
    """A URL for messages: scheme and host only (its path may be a Slack token, its user
    part a password)."""
    from urllib.parse import urlsplit

    if not isinstance(url, str):
        return repr(url)[:60]
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "(a URL)"
    return f"{parts.scheme}://{host}/…" if parts.scheme else "(a URL)"


# -- sending ---------------------------------------------------------------------------------
def _opener():
    """A urllib opener that refuses redirects: a webhook answers where it is configured."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            raise _Failed(f"HTTP {code}: redirected elsewhere; configure the final URL", False)

    return urllib.request.build_opener(NoRedirect())


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    import http.client
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST")
    for k, v in {
        "Content-Type": "application/json",
        "User-Agent": "repro-alerts/1",
        **headers,
    }.items():
        req.add_header(k, v)
    try:
        with _opener().open(req, timeout=timeout) as resp:
            resp.read(65536)
    except urllib.error.HTTPError as exc:
        retry = exc.code >= 500 or exc.code in (408, 429)
        raise _Failed(f"HTTP {exc.code} {exc.reason}", retry) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _Failed(f"no answer within {timeout:.1f} s") from None
        raise _Failed(f"cannot connect ({reason})") from None
    except TimeoutError:
        raise _Failed(f"no answer within {timeout:.1f} s") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        said = _without_secrets(str(exc), url)
        raise _Failed(f"{type(exc).__name__}: {said[:300]}") from None


def _without_secrets(text: str, url: str) -> str:
    """`text` without the URL, its path and query (a Slack token) or its password."""
    from urllib.parse import urlsplit

    text = text.replace(url, redacted(url))
    parts = urlsplit(url)
    for secret in (url[url.find(parts.netloc) + len(parts.netloc) :], parts.password):
        if secret and len(secret) > 1:
            text = text.replace(secret, "…")
    return text


def _run_command(argv: list[str], body: bytes, root: str, timeout: float) -> None:
    """Run the program with the event on stdin. Its exit is what counts: its stderr goes to a
    temporary file, not a pipe, so a child it leaves running (which would hold a pipe open)
    cannot turn a delivered alert into a timeout that is re-sent; what it leaves in its
    process group is killed once it exits, and the whole group with the timeout."""
    import subprocess
    import tempfile

    if not argv:
        raise _Failed("the command is empty", False)
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=root,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            raise _Failed(f"cannot start '{argv[0]}' ({exc.strerror or exc})", False) from None
        try:
            proc.communicate(body, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            raise _Failed(f"'{argv[0]}' did not finish within {timeout:.1f} s") from None
        _kill_group(proc.pid)  # what it left running in its group must not outlive it
        if proc.returncode != 0:
            err.seek(max(0, err.seek(0, os.SEEK_END) - 4096))
            tail = err.read().decode(errors="replace").strip().splitlines()[-1:]
            said = f": {tail[0][:200]}" if tail else ""
            raise _Failed(f"'{argv[0]}' exited with code {proc.returncode}{said}")


def _kill_group(pgid: int) -> None:
    import signal

    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def slack_payload(event: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (the notification line) and `blocks`."""
    sev = event.get("severity", "?")
    mark = {"major": ":rotating_light:", "minor": ":warning:", "failure": ":x:"}.get(sev, "")
    title = f"repro: {sev} alert in {event.get('project') or 'a project'}"
    if event.get("source") == "test":
        title += " (test)"
    reasons = event.get("reasons") or []
    detail = "\n".join(f"• {r}" for r in reasons[:20]) or "(no details)"
    if len(reasons) > 20:
        detail += f"\n… and {len(reasons) - 20} more"
    snap = (event.get("snapshot") or "")[:12] or "none"
    prev = (event.get("previous") or "")[:12] or "none"
    context = f"snapshot `{snap}` (was `{prev}`) · run `{event.get('run_id') or '-'}`"
    return {
        "text": f"{mark} {title}: " + (reasons[0] if reasons else "see details"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": detail[:2900]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def _attempt(root: str, entry: dict[str, Any], event: dict[str, Any], timeout: float) -> None:
    kind = entry.get("kind")
    body = body_bytes(event)
    if kind == "command":
        _run_command(command_argv(entry.get("command")), body, root, timeout)
        return
    problem = url_problem(entry.get("url"))
    if problem:
        raise _Failed(f"url {problem}", False)
    if kind == "slack":
        _post(entry["url"], body_bytes(slack_payload(event)), {}, timeout)
        return
    headers = {}
    env = entry.get("secret_env")
    if env:
        key = os.environ.get(env)
        if not key:
            raise _Failed(f"environment variable {env} (secret_env) is not set", False)
        headers[SIGNATURE_HEADER] = signature(key.encode(), body)
    _post(entry["url"], body, headers, timeout)


def _missing_secret(entry: dict[str, Any]) -> str | None:
    env = entry.get("secret_env")
    if entry.get("kind") == "webhook" and env and not os.environ.get(env):
        return env
    return None


def _deliver(
    root: str, entry: dict[str, Any], event: dict[str, Any], deadline: float
) -> tuple[bool, int, str | None]:
    """Attempts with exponential backoff until one succeeds, the retries are used up, or the
    deadline passes: (delivered, attempts, last error)."""
    import time

    timeout = float(entry.get("timeout", DEFAULT_TIMEOUT))
    retries = int(entry.get("retries", DEFAULT_RETRIES))
    attempts, delay, last = 0, _FIRST_BACKOFF, None
    while True:
        left = deadline - time.monotonic()
        if left <= 0.05:
            return False, attempts, last or "no time left in the alert budget"
        attempts += 1
        try:
            _attempt(root, entry, event, min(timeout, left))
            return True, attempts, None
        except _Failed as exc:
            last = str(exc)
            if not exc.retry or attempts > retries:
                return False, attempts, last
        time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        delay *= 2


def fire(
    root: str, config: dict[str, Any], event: dict[str, Any], *, budget: float = DEFAULT_BUDGET
) -> list[Delivery]:
    """Send `event` to every `[[alerts]]` entry whose `on` wants its severity, all sinks at once
    and within `budget` seconds in total. What fails is queued as pending (see `retry`); a
    webhook whose `secret_env` is not set is queued at once, never sent unsigned."""
    if not event.get("project"):
        event = {**event, "project": os.path.basename(os.path.abspath(root))}
    chosen = [
        (i, e)
        for i, e in enumerate(entries(config), 1)
        if matches(e.get("on", ""), event["severity"])
    ]
    return _send_all(root, chosen, event, budget, queue=True)


def _send_all(
    root: str,
    chosen: list[tuple[int, dict[str, Any]]],
    event: dict[str, Any],
    budget: float,
    queue: bool,
) -> list[Delivery]:
    import time

    if not chosen:
        return []
    deadline = time.monotonic() + budget
    results = _sends(root, [(e, event) for _, e in chosen], deadline)
    return [
        _conclude(root, i, e, event, result, queue)
        for (i, e), result in zip(chosen, results, strict=True)
    ]


Result = tuple[bool, int, str | None]


def _sends(
    root: str, jobs: list[tuple[dict[str, Any], dict[str, Any]]], deadline: float
) -> list[Result]:
    """Each (entry, event) delivered in its own daemon thread, all within `deadline`. A send
    still going a moment after it (a server dripping bytes, a slow DNS answer) is given up on
    here; its thread cannot hold the process's exit."""
    import threading
    import time

    results: list[Result | None] = [None] * len(jobs)

    def work(n: int, entry: dict[str, Any], event: dict[str, Any]) -> None:
        missing = _missing_secret(entry)
        if missing:
            results[n] = (False, 0, f"environment variable {missing} (secret_env) is not set")
            return
        try:
            results[n] = _deliver(root, entry, event, deadline)
        except Exception as exc:  # a bug here must not lose the alert: it is queued
            results[n] = (False, 1, f"{type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=work, args=(n, e, ev), daemon=True, name=f"repro-alert-{n}")
        for n, (e, ev) in enumerate(jobs)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline + 1.0 - time.monotonic()))
    late = (False, 1, "still waiting for an answer when the alert budget ran out")
    return [r if r is not None else late for r in results]


def _conclude(
    root: str,
    index: int,
    entry: dict[str, Any],
    event: dict[str, Any],
    result: Result,
    queue: bool,
) -> Delivery:
    """The delivery's record; a failed one queued as pending (when `queue`) with its warning."""
    ok, attempts, error = result
    kind, shown = str(entry.get("kind")), _shown(entry)
    d = Delivery(index, kind, shown, ok, attempts, error)
    if ok:
        return d
    what = f"alert to [[alerts]] entry {index} ({kind} {shown})"
    missing = _missing_secret(entry)
    if missing and attempts == 0:
        what += f" not sent: the environment variable {missing} that secret_env names is not set"
    else:
        what += f" failed after {attempts} attempt{'s' * (attempts != 1)}: {error}"
    if queue:
        d.pending = queue_pending(root, index, entry, event, attempts, error or "failed").id
        d.warning = (
            f"{what}; queued as .repro/alerts/pending/{d.pending}.json ('repro alerts retry')"
        )
    else:
        d.warning = what
    return d


def warning_lines(deliveries: list[Delivery]) -> list[str]:
    """The `warning:` lines to print for `deliveries` (one per failed delivery)."""
    return [f"warning: {d.warning}" for d in deliveries if d.warning]


warnings = warning_lines  # the name repro.gate asks for


# -- the pending queue -------------------------------------------------------------------------
def pending_dir(root: str, create: bool = False) -> str:
    """`.repro/alerts/pending`, refused when a symlink on the way leads out of `.repro/`."""
    from repro.errors import UntrustedInputError

    dot = os.path.join(root, ".repro")
    path = os.path.join(root, *PENDING)
    if create and not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        ignore = os.path.join(root, *PENDING[:-1], ".gitignore")
        if not os.path.lexists(ignore):
            with open(ignore, "w") as f:
                f.write("# alert deliveries waiting for 'repro alerts retry': not for git\n*\n")
    real, dot_real = os.path.realpath(path), os.path.realpath(dot)
    if os.path.lexists(path) and not real.startswith(dot_real + os.sep):
        raise UntrustedInputError(".repro/alerts/pending", "folder", real, "leads out of .repro/")
    return path


def _new_id() -> str:
    import secrets
    import time

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def _write_pending(root: str, p: Pending) -> None:
    """Atomically: a temporary file in the same folder, then a rename."""
    from repro.atomicfile import write_atomic

    folder = pending_dir(root, create=True)
    text = json.dumps(p.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
    write_atomic(os.path.join(folder, p.id + ".json"), text.encode())


def queue_pending(
    root: str, index: int, entry: dict[str, Any], event: dict[str, Any], attempts: int, error: str
) -> Pending:
    now = _now()
    p = Pending(_new_id(), index, sink_of(entry), event, attempts, error, now, now)
    _write_pending(root, p)
    return p


def _load_pending(path: str, name: str) -> Pending | None:
    """One pending file, or None when it is not one of ours (skipped, never acted on)."""
    from repro.readfile import read_bytes

    try:
        d = json.loads(read_bytes(path, f".repro/alerts/pending/{name}", MAX_PENDING_BYTES))
    except Exception:
        return None
    ok = (
        isinstance(d, dict)
        and d.get("id") == name[: -len(".json")]
        and isinstance(d.get("entry"), int)
        and isinstance(d.get("sink"), dict)
        and isinstance(d.get("event"), dict)
        and d["event"].get("severity") in SEVERITIES
        and type(d.get("attempts", 0)) is int  # a crafted "abc" or 1e400 must not crash
    )
    if not ok:
        return None
    return Pending(
        d["id"],
        d["entry"],
        d["sink"],
        d["event"],
        max(0, d.get("attempts") or 0),
        str(d.get("last_error") or ""),
        str(d.get("queued") or ""),
        str(d.get("tried") or ""),
    )


def pending(root: str) -> list[Pending]:
    """The queued deliveries, oldest first."""
    folder = pending_dir(root)
    if not os.path.isdir(folder):
        return []
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json") and not name.startswith("."):
            p = _load_pending(os.path.join(folder, name), name)
            if p is not None:
                out.append(p)
    return out


def _entry_for(config: dict[str, Any], p: Pending) -> tuple[int, dict[str, Any]] | None:
    """The entry a pending delivery goes to: its own number if that still sends to the same
    place, else the first entry that does (the config may have been reordered)."""
    found = entries(config)
    want = p.sink.get("fingerprint")
    if 1 <= p.entry <= len(found) and sink_of(found[p.entry - 1])["fingerprint"] == want:
        return p.entry, found[p.entry - 1]
    for i, e in enumerate(found, 1):
        if sink_of(e)["fingerprint"] == want:
            return i, e
    return None


def retry(root: str, config: dict[str, Any], *, budget: float = 30.0) -> list[Delivery]:
    """Re-send every pending delivery (all at once, within `budget`); a delivered one is
    removed, one that fails again stays with its attempts and last error updated."""
    import time

    queue = pending(root)
    if not queue:
        return []
    found = [(p, _entry_for(config, p)) for p in queue]
    sendable = [(p, f) for p, f in found if f is not None]
    results = _sends(root, [(f[1], p.event) for p, f in sendable], time.monotonic() + budget)
    done = dict(zip([p.id for p, _ in sendable], results, strict=True))
    return [_retried(root, p, f, done.get(p.id)) for p, f in found]


def _retried(
    root: str, p: Pending, found: tuple[int, dict[str, Any]] | None, result: Result | None
) -> Delivery:
    """A retried delivery's record: removed from the queue when delivered, else updated."""
    if found is None or result is None:
        error = "its sink is no longer in [[alerts]] (delete the file to drop it)"
        d = Delivery(p.entry, str(p.sink.get("kind")), str(p.sink.get("target")), False, 0, error)
        d.pending, d.warning = p.id, f"pending alert {p.id}: {error}"
        return d
    (index, entry), (ok, attempts, error) = found, result
    d = Delivery(index, str(entry.get("kind")), _shown(entry), ok, attempts, error, p.id)
    if ok:
        try:
            os.unlink(os.path.join(pending_dir(root), p.id + ".json"))
        except FileNotFoundError:
            pass
        return d
    p.attempts += attempts
    p.last_error, p.tried = error or "failed", _now()
    _write_pending(root, p)
    d.warning = f"pending alert {p.id} to entry {index} ({d.kind} {d.target}) still fails: {error}"
    return d


def test_event(severity: str, project: str) -> dict[str, Any]:
    """A sample event for `repro alerts test`: marked `"source": "test"`."""
    reasons = [f"this is a test alert from 'repro alerts test' (severity {severity})"]
    return alert_event(severity, None, None, None, [], reasons, "test", project)


def send_test(
    root: str, config: dict[str, Any], on: str | None, *, budget: float = DEFAULT_BUDGET
) -> list[Delivery]:
    """Send a sample event to each entry matching severity `on` (every entry when None, each
    with the severity it asks for). Nothing is queued: a test reports, it does not retry."""
    name = os.path.basename(os.path.abspath(root))
    out: list[Delivery] = []
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, e in enumerate(entries(config), 1):
        own = e.get("on", "any")
        if on is None or on == "any":
            sev = "minor" if own == "any" else own
        elif matches(own, on):
            sev = on
        else:
            continue
        groups.setdefault(sev, []).append((i, e))
    for sev, chosen in groups.items():
        out += _send_all(root, chosen, test_event(sev, name), budget, queue=False)
    return sorted(out, key=lambda d: d.entry)
