"""A fresh `git clone` of a project whose cache lives on a remote (a folder, and S3 through
moto): `status` says what is missing and that `repro pull` fetches it, `run` fetches tracked data
and restores the stages by itself, `run --dry-run` never fails, `pull TARGET` pulls only that,
and `pull && fsck` passes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from repro.project import Project
from tests.conftest import AWS_ENV, git, run_cli, write

SPEC = """\
stages:
  prep:
    cmd: echo prep >> "$COUNTER"; cat data/*.csv > feats.txt
    deps: [data]
    outs: [feats.txt]
  train:
    cmd: echo train >> "$COUNTER"; cat feats.txt feats.txt > model.bin
    deps: [feats.txt]
    outs: [model.bin]
"""


def cli(root, *args, env=None, ok=None):
    return run_cli(list(args), root, env={**AWS_ENV, **(env or {})}, check=ok)


def make_origin(tmp_path: Path, url: str, options: list[str]) -> tuple[str, dict, str]:
    """A pushed project with two snapshots (the tracked data changed once) and a git commit."""
    root = tmp_path / "origin"
    root.mkdir()
    git(root, "init", "-q")
    Project.init(root).state.close()
    write(root, "repro.yaml", SPEC)
    write(root, "data/a.csv", "x,y\n1,2\n")
    write(root, "data/b.csv", "x,y\n3,4\n")
    counter = tmp_path / "counter"
    counter.write_text("")
    env = {"COUNTER": str(counter)}
    args = ["remote", "add", "origin", url, "--default"]
    for o in options:
        args += ["-o", o]
    cli(root, *args, ok=True)
    cli(root, "add", "data", ok=True)
    old = cli(root, "run", "--json", env=env, ok=True).json()["snapshot"]
    write(root, "data/b.csv", "x,y\n3,5\n")
    cli(root, "run", env=env, ok=True)
    cli(root, "push", ok=True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "pipeline")
    counter.write_text("")
    return str(root), env, old


def clone(origin: str, dst: Path) -> str:
    subprocess.run(["git", "clone", "-q", origin, str(dst)], check=True)
    return str(dst)


def no_abs_paths(tmp_path: Path, *results) -> None:
    for r in results:
        assert str(tmp_path) not in r.out + r.err, r.out + r.err


def test_fresh_clone_status_run_pull_target_and_fsck(tmp_path, remote_url) -> None:
    url, opts = remote_url
    origin, env, old = make_origin(tmp_path, url, opts)
    counter = Path(env["COUNTER"])

    # status before any pull: what is missing, how much, and the fix; no absolute path
    a = clone(origin, tmp_path / "a")
    js = cli(a, "status", "--json", "--exit-code")
    text = cli(a, "status")
    no_abs_paths(tmp_path, js, text)
    assert js.code == 1
    doc = js.json()
    (data,) = doc["data"]
    assert data["path"] == "data" and data["state"] == "stale"
    (why,) = data["reasons"]
    assert why["kind"] == "missing" and why["target"] == "data"
    assert why["count"] == 2 and why["bytes"] == 16 and why["fix"] == "repro pull"
    kinds = {s["name"]: {r["kind"] for r in s["reasons"]} for s in doc["stages"]}
    assert kinds == {"prep": {"missing"}, "train": {"missing"}}
    assert "repro pull" in text.out and "not in the local cache" in text.out

    # run --dry-run: no failure, nothing fetched into the workspace
    dry = cli(a, "run", "--dry-run")
    no_abs_paths(tmp_path, dry)
    assert dry.code == 0 and "FAILED" not in dry.out + dry.err
    assert "data: data would be put back" in dry.out
    assert not Path(a, "data").exists() and not Path(a, "model.bin").exists()

    # run fetches the tracked data and restores both stages from the remote: nothing runs
    r = cli(a, "run", "--json", env=env, ok=True).json()
    assert [(c["path"], c["action"]) for c in r["data"]] == [("data", "restored")]
    assert {s["name"]: s["status"] for s in r["stages"]} == {
        "prep": "restored",
        "train": "restored",
    }
    assert counter.read_text() == ""
    assert Path(a, "data/b.csv").read_text() == "x,y\n3,5\n"
    assert Path(a, "model.bin").read_bytes() == Path(origin, "model.bin").read_bytes()
    assert cli(a, "status", "--exit-code").code == 0

    # pull TARGET: the stage's outputs and the recorded paths it reads, checked out alone
    b = clone(origin, tmp_path / "b")
    p = cli(b, "pull", "train")
    assert p.code == 0, p.err
    assert Path(b, "model.bin").read_bytes() == Path(origin, "model.bin").read_bytes()
    assert Path(b, "feats.txt").exists() and not Path(b, "data").exists()
    st = {s["name"]: s for s in cli(b, "status", "--json").json()["stages"]}
    assert st["train"]["state"] == "up-to-date"
    assert [r["kind"] for r in st["prep"]["reasons"]] == ["missing"]
    bad = cli(b, "pull", "nope")
    assert bad.code != 0 and "nope" in bad.err and "Traceback" not in bad.err

    # pull && fsck passes; --all names the older snapshot and the path that needs what is absent
    c = clone(origin, tmp_path / "c")
    before = cli(c, "fsck", "--json")
    assert before.code == 1
    detail = before.json()["missing_detail"]
    assert {d["needed_by"] for d in detail} == {"repro.lock"}
    assert {d["path"] for d in detail} >= {"data", "model.bin"}
    cli(c, "pull", ok=True)
    assert cli(c, "fsck").code == 0
    every = cli(c, "fsck", "--all", "--json")
    assert every.code == 1
    needed = {(d["needed_by"], d["path"]) for d in every.json()["missing_detail"]}
    assert (f"snapshot {old[:12]}", "data") in needed


def test_checkout_in_fresh_clone_fetches_or_says_pull(tmp_path) -> None:
    origin, env, _old = make_origin(tmp_path, f"file://{tmp_path / 'remote'}", [])
    a = clone(origin, tmp_path / "a")
    r = cli(a, "checkout")
    assert r.code == 0, r.err
    assert Path(a, "data/a.csv").read_text() == "x,y\n1,2\n"
    assert Path(a, "model.bin").exists()
    # without a reachable copy: one sentence, a relative path, and the fix
    b = clone(origin, tmp_path / "b")
    cli(b, "remote", "remove", "origin", ok=True)
    for args in (["checkout"], ["run"]):
        r = cli(b, *args, env=env)
        assert r.code == 1 and "repro pull" in r.err and "Traceback" not in r.err, r.err
        no_abs_paths(tmp_path, r)
    assert cli(b, "run", "--dry-run", env=env).code == 0
