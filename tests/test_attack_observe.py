"""An attacker's pass over issue 12's boundaries: a hostile remote's `tags/`, a committed
`.repro/config.toml` (alerts, the Prometheus textfile) and a committed hooks folder. Each case
goes through the real CLI and asserts what a user sees (the sentence, the exit code) and that
nothing outside, or that the attacker aimed at, changed on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import alive, one_error, snapshot_tree, untouched, write

TOKEN = "XOXB-SECRET-TOKEN-0123"
STAGE = "stages:\n  make:\n    cmd: echo {n} > out.txt\n    outs: [out.txt]\n"


def config(root, text: str) -> None:
    write(root, ".repro/config.toml", text)


def one_run(root, cli, n: int = 1):
    write(root, "repro.yaml", STAGE.format(n=n))
    return cli("run")


def local_tags(root) -> list[str]:
    d = Path(root, ".repro", "cache", "tags")
    return sorted(os.listdir(d)) if d.is_dir() else []


# -- alerts ------------------------------------------------------------------------------------
def test_command_alert_leaving_a_child_is_delivered_once_and_the_child_stopped(
    project, cli, tmp_path
) -> None:
    """Before: the child held the stderr pipe, so the delivery 'timed out', was retried 3 times
    (three alerts sent) and held the command for the whole budget; the child lived on."""
    log, pidfile = tmp_path / "got.log", tmp_path / "child.pid"
    script = f"cat >> {log}; echo >> {log}; sleep 60 & echo $! > {pidfile}"
    config(
        project.root,
        f'[[alerts]]\non = "any"\nkind = "command"\ncommand = ["sh", "-c", "{script}"]\n'
        "timeout = 3\nretries = 2\n",
    )
    t0 = time.monotonic()
    r = cli("alerts", "test")
    assert r.code == 0, r.err
    assert "delivered" in r.out
    assert time.monotonic() - t0 < 3
    assert log.read_text().count('"event":"alert"') == 1
    assert not alive(int(pidfile.read_text()))
    assert not Path(project.root, ".repro", "alerts", "pending").exists()


@pytest.mark.parametrize(
    "case,url",
    [
        ("control-char-in-path", f"https://hooks.slack.com/services/{TOKEN}\\u0001x"),
        ("tab-in-path", f"https://hooks.slack.com/services/{TOKEN}\\tx"),
        ("ftp-scheme", f"ftp://hooks.slack.com/services/{TOKEN}"),
        ("file-scheme", f"file:///services/{TOKEN}"),
    ],
)
def test_hostile_alert_url_is_refused_without_echoing_its_token(project, cli, case, url) -> None:
    """Before: a control character passed the check and http.client's error, with the URL's
    path (a Slack token), went into the warning and the pending file; a bad scheme's error
    sentence quoted the whole URL."""
    config(project.root, f'[[alerts]]\non = "any"\nkind = "slack"\nurl = "{url}"\n')
    before = snapshot_tree(project.root, skip=(".git",))
    for args in (("alerts", "test"), ("check",)):
        r = cli(*args)
        line = one_error(r)
        assert ".repro/config.toml" in line and "[[alerts]] entry 1" in line and "url" in line
        assert TOKEN not in r.err + r.out, case
    assert snapshot_tree(project.root, skip=(".git",)) == before


@pytest.mark.parametrize(
    "case,table,key,url",
    [
        ("pushgateway-password", "prometheus", "pushgateway", f"ftp://u:{TOKEN}@gw.example/"),
        ("mlflow-file-store-token", "mlflow", "tracking_uri", f"file:///runs?token={TOKEN}"),
    ],
)
def test_observer_url_error_hides_its_secret(project, cli, case, table, key, url) -> None:
    """Before: the error sentence quoted the whole URL, password or token included."""
    config(project.root, f'[observe.{table}]\n{key} = "{url}"\n')
    before = snapshot_tree(project.root, skip=(".git",))
    r = cli("check")
    line = one_error(r)
    assert f"key 'observe.{table}.{key}' must be" in line, case
    assert TOKEN not in r.err + r.out
    assert snapshot_tree(project.root, skip=(".git",)) == before


# -- tags from a remote ------------------------------------------------------------------------
@pytest.fixture
def pushed(project, cli, tmp_path):
    """A project with tag v1 pushed to a folder remote: (root, the remote's tags folder)."""
    one_run(project.root, cli)
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{remote}", "--default", ok=True)
    cli("tag", "v1", ok=True)
    cli("push", ok=True)
    return project.root, remote / "tags"


def test_fifo_in_remote_tags_is_skipped_not_hung(pushed, cli) -> None:
    """Before: `repro pull` opened the FIFO and waited forever."""
    root, tags = pushed
    os.mkfifo(tags / "evil")
    t0 = time.monotonic()
    r = cli("pull")
    assert r.code == 0, r.err
    assert "tags/evil" in r.err and "not a regular file" in r.err
    assert time.monotonic() - t0 < 20
    assert local_tags(root) == ["v1"]


def test_huge_remote_tag_is_refused_before_it_is_read(pushed, cli) -> None:
    """Before: the whole file (here 2 GB, sparse) was read into memory, then refused."""
    import resource

    root, tags = pushed
    with open(tags / "huge", "wb") as f:
        f.truncate(2 << 30)
    r = cli("pull")
    assert r.code == 0, r.err
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child's
    assert peak_kb < 1 << 20, f"a child of this test used {peak_kb} KB"
    assert "tag 'huge': is over 65,536 bytes" in r.err
    assert local_tags(root) == ["v1"]


def test_tag_names_differing_only_in_case(pushed, cli) -> None:
    """Before: `repro tag V1` made a second tag beside `v1` (one file on macOS/Windows, where it
    silently moved `v1`), and a pull took a remote `V1` beside a local `v1`."""
    root, tags = pushed
    tag_file = Path(root, ".repro", "cache", "tags", "v1").read_bytes()
    line = one_error(cli("tag", "V1"))
    assert "'V1' differs only in case from tag 'v1'" in line
    assert local_tags(root) == ["v1"]
    assert Path(root, ".repro", "cache", "tags", "v1").read_bytes() == tag_file
    # the remote gets a `V1` (as from a machine whose filesystem tells case apart)
    from repro.tags import Tag

    t = Tag.decode((tags / "v1").read_bytes(), "v1", "test")
    (tags / "V1").write_bytes(Tag("V1", t.sig, t.user, t.host, t.time).encode())
    r = cli("pull")
    assert r.code == 0, r.err
    assert "tag 'V1' differs only in case from tag 'v1'" in r.err
    assert local_tags(root) == ["v1"]


# -- the Prometheus textfile from a committed config ---------------------------------------------
@pytest.mark.parametrize(
    "case,target,tracked,problem",
    [
        ("git-tracked-source", "train.py", True, "is a file git tracks"),
        ("stage-output", "out.txt", False, "is a file repro did not write"),
        ("data-file", "data/raw.csv", False, "is a file repro did not write"),
    ],
)
def test_textfile_never_overwrites_a_file_it_did_not_write(
    project, cli, case, target, tracked, problem
) -> None:
    """Before: the observer replaced the file with metrics at the end of every run."""
    root = project.root
    write(root, "train.py", "print('train')\n")
    write(root, "data/raw.csv", "a,b\n1,2\n")
    if tracked:
        subprocess.run(["git", "-C", root, "add", target], check=True)
    one_run(root, cli, 1)
    config(root, f'[observe]\nuse = ["prometheus"]\n[observe.prometheus]\ntextfile = "{target}"\n')
    want = Path(root, target).read_bytes() if target != "out.txt" else b"2\n"
    r = one_run(root, cli, 2)
    assert r.code == 0, r.err
    assert f"textfile '{target}' {problem}" in r.err, case
    assert Path(root, target).read_bytes() == want
    # a textfile repro wrote is still rewritten run after run
    config(root, '[observe]\nuse = ["prometheus"]\n[observe.prometheus]\ntextfile = "m/r.prom"\n')
    for n in (3, 4):
        assert one_run(root, cli, n).code == 0
        assert Path(root, "m/r.prom").read_bytes().startswith(b"# HELP repro_")


# -- git hooks ---------------------------------------------------------------------------------
def test_committed_hooks_folder_symlinked_out_is_refused(project, cli, outside) -> None:
    """Before: with core.hooksPath = .githooks and `.githooks` a committed symlink, the three
    hook scripts were written into the folder outside the repository."""
    root = project.root
    os.symlink(outside, os.path.join(root, ".githooks"))
    subprocess.run(["git", "-C", root, "config", "core.hooksPath", ".githooks"], check=True)
    line = one_error(cli("install-hooks"))
    assert "core.hooksPath" in line and "'.githooks' leads out of the repository" in line
    assert untouched(outside)


def test_planted_temporary_hook_symlink_is_not_written_through(project, cli, outside) -> None:
    """Before: a committed `.githooks/pre-commit.repro-tmp -> victim` made install-hooks write
    the hook script into the victim and make it executable."""
    root = project.root
    hooks = Path(root, ".githooks")
    hooks.mkdir()
    os.symlink(outside / "victim.txt", hooks / "pre-commit.repro-tmp")
    subprocess.run(["git", "-C", root, "config", "core.hooksPath", ".githooks"], check=True)
    r = cli("install-hooks")
    assert r.code == 0, r.err
    assert (hooks / "pre-commit").read_text().startswith("#!/bin/sh")
    assert untouched(outside)
    assert not os.access(outside / "victim.txt", os.X_OK)


def test_machine_hooks_path_outside_is_still_honoured(project, cli, tmp_path) -> None:
    """core.hooksPath set on this machine to a folder outside the repository is its owner's
    choice (e.g. shared hooks): install-hooks writes there."""
    shared = tmp_path / "shared-hooks"
    subprocess.run(["git", "-C", project.root, "config", "core.hooksPath", str(shared)], check=True)
    r = cli("install-hooks")
    assert r.code == 0, r.err
    assert sorted(os.listdir(shared)) == ["post-checkout", "post-merge", "pre-commit"]
    shutil.rmtree(shared)


@pytest.mark.parametrize(
    "case,field,value",
    [
        ("c1-csi-in-message", "message", "ok\x9b2J\x9b31mHACKED"),
        ("bidi-override-in-user", "user", "alice\u202egnp.exe"),
    ],
)
def test_remote_tag_with_terminal_tricks_is_refused(pushed, cli, case, field, value) -> None:
    """Before: a tag whose text held C1 controls (U+009B is CSI) or bidi overrides was pulled
    and `repro tags` printed it as it was."""
    from dataclasses import replace

    from repro.tags import Tag

    root, tags = pushed
    t = Tag.decode((tags / "v1").read_bytes(), "v1", "test")
    (tags / "evil").write_bytes(replace(t, name="evil", **{field: value}).encode())
    r = cli("pull")
    assert r.code == 0, r.err
    assert f"tag 'evil': field '{field}' is not" in r.err, case
    assert local_tags(root) == ["v1"]
    assert value not in cli("tags").out


@pytest.mark.parametrize("case,name", [("con", "CON"), ("nul-ext", "nul.txt"), ("com1", "com1")])
def test_windows_device_names_are_no_tag_names(pushed, cli, case, name) -> None:
    """Before: `repro tag CON` was taken; the tag could then be neither pushed from nor pulled
    onto Windows (the file name is a device there)."""
    root, _tags = pushed
    line = one_error(cli("tag", name))
    assert f"tag name '{name}' is a device name on Windows" in line, case
    assert local_tags(root) == ["v1"]


# -- the pending queue -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case,attempts", [("text", '"abc"'), ("huge-float", "1e400"), ("list", "[1]")]
)
def test_crafted_pending_file_is_skipped_not_a_crash(project, cli, case, attempts) -> None:
    """Before: `repro alerts pending` and `retry` died with exit 70 ('unexpected ValueError')."""
    root = project.root
    config(root, '[[alerts]]\non = "any"\nkind = "webhook"\nurl = "http://127.0.0.1:9/x"\n')
    body = (
        '{"id": "x", "entry": 1, "sink": {}, "event": {"severity": "major"}, '
        f'"attempts": {attempts}}}'
    )
    write(root, ".repro/alerts/pending/x.json", body)
    for args in (("alerts", "pending"), ("alerts", "retry")):
        r = cli(*args)
        assert r.code == 0 and "Traceback" not in r.err, (case, r.code, r.err)
        assert "no alert is pending" in r.out + r.err
    assert Path(root, ".repro/alerts/pending/x.json").read_text() == body


# -- observe: checks ---------------------------------------------------------------------------
def test_check_command_that_leaves_its_session_does_not_hold_the_run(
    project, cli, tmp_path
) -> None:
    """Before: a check (or a stage) that started a process in a new session (`setsid`), which
    kept the output pipe, held `repro run` until that process exited (here 300 s; forever for
    a daemon) and kept the project lock; now it is stopped once the command has exited."""
    pidfile = tmp_path / "escaped.pid"
    write(
        project.root,
        "repro.yaml",
        "stages:\n  make:\n    cmd: echo 1 > out.txt\n    outs: [out.txt]\n    observe:\n"
        f"      - cmd: setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' &"
        f" while [ ! -s {pidfile} ]; do sleep 0.05; done; echo started\n"
        "        name: bg\n",
    )
    t0 = time.monotonic()
    r = cli("run")
    assert r.code == 0, r.err
    assert "check 'bg' passed" in r.out + r.err
    assert time.monotonic() - t0 < 20
    assert not alive(int(pidfile.read_text()))
    assert cli("status").code == 0  # the project lock is free again
