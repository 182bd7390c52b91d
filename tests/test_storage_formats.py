"""Storage formats (issue 11): one owner of the layout, versioned records that an older repro
reads forward-compatibly, a newer format refused in one sentence; typed errors; dead options
refused. Driven through the real CLI on a real project."""

from __future__ import annotations

import os
from pathlib import Path

from repro.canonical import hash_bytes, packb, unpackb
from repro.errors import NotFoundError, PathError, SpecError
from repro.remote import RemoteError
from repro.store import layout
from tests.conftest import one_error, write

SPEC = """\
stages:
  make:
    cmd: python3 -c "open('out.txt','w').write(open('in.txt').read() * 2)"
    deps: [in.txt]
    outs: [out.txt]
"""


def _ran(project, cli) -> dict:
    write(project.root, "repro.yaml", SPEC)
    write(project.root, "in.txt", "hello\n")
    return cli("run", "--json", ok=True).json()


def _cache(project, key: str) -> Path:
    return Path(project.root, ".repro", "cache", key)


def _rewrite(path: Path, **changes) -> dict:
    d = unpackb(path.read_bytes())
    d.update(changes)
    os.chmod(path, 0o644)
    path.write_bytes(packb(d))
    return d


def test_layout_keys_are_the_documented_ones() -> None:
    h = "0123456789abcdef0123456789abcdef"
    assert layout.object_key(h) == f"objects/01/{h[2:]}"
    assert layout.runcache_key(h) == f"runs/{h}"
    assert layout.snapshot_key(h) == f"snapshots/{h}"
    assert layout.record_key("r1") == "records/r1"
    assert layout.object_hash(layout.object_key(h)) == h
    assert layout.META == ("runs", "snapshots", "records")


def test_records_and_entries_carry_a_format_and_show_json_is_unchanged(project, cli) -> None:
    run = _ran(project, cli)
    rec = unpackb(_cache(project, layout.record_key(run["run_id"])).read_bytes())
    assert rec["format"] == 1
    sig = run["stages"][0]["signature"]
    entry = unpackb(_cache(project, layout.runcache_key(sig)).read_bytes())
    assert entry["format"] == 1 and entry["signature"] == sig
    shown = cli("show", run["run_id"], "--json", ok=True).json()
    assert "format" not in shown and shown["run_id"] == run["run_id"]


def test_a_newer_repros_record_with_new_fields_is_still_listed(project, cli) -> None:
    run = _ran(project, cli)
    path = _cache(project, layout.record_key(run["run_id"]))
    d = unpackb(path.read_bytes())
    d["stages"][0]["gpu_seconds"] = 3.5
    _rewrite(path, stages=d["stages"], dashboard_url="https://example.invalid/r/1")
    rows = cli("log", "--json", ok=True).json()
    assert [r["run_id"] for r in rows if r["run_id"] == run["run_id"]] == [run["run_id"]]
    shown = cli("show", run["run_id"], "--json", ok=True).json()
    assert "dashboard_url" not in shown and shown["stages"][0]["name"] == "make"


def test_a_record_in_a_newer_format_is_refused_in_one_sentence(project, cli) -> None:
    run = _ran(project, cli)
    _rewrite(_cache(project, layout.record_key(run["run_id"])), format=2)
    log = cli("log", "--json", ok=True)
    assert log.json() == [] and "1 run record(s) were made by a newer repro" in log.err
    r = cli("show", run["run_id"])
    line = one_error(r)
    assert r.code == 1 and "made by a newer repro" in line and run["run_id"] in line, r.err
    assert "Traceback" not in r.err


def test_run_cache_entry_new_fields_are_used_a_newer_format_is_not(project, cli) -> None:
    sig = _ran(project, cli)["stages"][0]["signature"]
    entry = _cache(project, layout.runcache_key(sig))
    _rewrite(entry, worker_pool="gpu-7")
    os.unlink(Path(project.root, "out.txt"))
    again = cli("run", "--json", ok=True)
    assert again.json()["stages"][0]["status"] == "restored", again.err
    _rewrite(entry, format=9)
    os.unlink(Path(project.root, "out.txt"))
    third = cli("run", "--json", ok=True)
    assert third.json()["stages"][0]["status"] == "ran"
    assert "made by a newer repro" in third.err, third.err
    assert Path(project.root, "out.txt").read_text() == "hello\n" * 2


def test_a_newer_snapshot_is_kept_by_fsck_and_refused_by_show(project, cli) -> None:
    _ran(project, cli)
    data = packb({"format": 2, "stages": {}, "data": {}, "files": {}, "hologram": True})
    sig = hash_bytes(data)
    path = _cache(project, layout.snapshot_key(sig))
    path.write_bytes(data)
    report = cli("fsck", "--json").json()
    assert layout.snapshot_key(sig) not in report["corrupt"], report
    assert path.exists()
    r = cli("show", sig)
    assert r.code == 1 and "made by a newer repro" in one_error(r), r.err


def test_symlink_link_method_is_refused_not_silently_copied(project, cli) -> None:
    cfg = Path(project.root, ".repro", "config.toml")
    text = cfg.read_text()
    assert "[cache]" in text
    cfg.write_text(text.replace("[cache]", '[cache]\nlink = ["symlink", "copy"]', 1))
    write(project.root, "repro.yaml", SPEC)
    write(project.root, "in.txt", "hello\n")
    r = cli("run")
    line = one_error(r)
    assert r.code == 1 and "'symlink' is not supported" in line and "config.toml" in line, r.err
    assert not Path(project.root, "out.txt").exists()


def test_typed_errors_compose_their_sentence_and_keep_the_old_form() -> None:
    e = SpecError("repro.yaml", "must be a list", stage="train", key="deps", line=4)
    assert str(e) == "repro.yaml, line 4: stage 'train', key 'deps': must be a list."
    assert (e.file, e.stage, e.key, e.line) == ("repro.yaml", "train", "deps", 4)
    assert str(SpecError("repro.yaml: broken.")) == "repro.yaml: broken."
    p = PathError("data/x.csv", "does not exist")
    assert str(p) == "data/x.csv: does not exist." and p.path == "data/x.csv"
    r = RemoteError("origin", "s3://b/p", "cannot be reached (timeout)")
    assert str(r) == "remote 'origin' (s3://b/p): cannot be reached (timeout)."
    assert (r.remote, r.url) == ("origin", "s3://b/p")
    n = NotFoundError("remote", "up", where=".repro/config.toml", hint="see 'repro remote list'")
    assert str(n) == ".repro/config.toml: no remote named 'up' (see 'repro remote list')."
    assert (n.what, n.name) == ("remote", "up")
    assert NotFoundError("plain.").name is None


def test_push_carries_a_newer_repros_snapshot_and_entry(project, cli, tmp_path) -> None:
    sig = _ran(project, cli)["stages"][0]["signature"]
    _rewrite(_cache(project, layout.runcache_key(sig)), format=3)
    data = packb({"format": 2, "stages": {}, "data": {}, "files": {}})
    snap = hash_bytes(data)
    _cache(project, layout.snapshot_key(snap)).write_bytes(data)
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote), "--default", ok=True)
    r = cli("push", ok=True)
    assert Path(remote, layout.snapshot_key(snap)).read_bytes() == data, r.err
    assert unpackb(Path(remote, layout.runcache_key(sig)).read_bytes())["format"] == 3


def test_enums_serialise_as_the_documented_strings(project, cli) -> None:
    import json

    from repro.enums import Outcome, ReasonKind

    assert json.dumps([Outcome.UP_TO_DATE, ReasonKind.UPSTREAM]) == '["up-to-date", "upstream"]'
    assert packb({"s": Outcome.RESTORED}) == packb({"s": "restored"})
    run = _ran(project, cli)
    assert [s["status"] for s in run["stages"]] == ["ran"]
    write(project.root, "in.txt", "changed\n")
    st = cli("status", "--json", ok=True).json()
    assert st["stages"][0]["reasons"] == [{"kind": "data", "target": "in.txt"}]
