"""Tags travel through push and pull (a folder remote, and S3 through moto): a fresh clone gets
them; a pull never moves a local tag (a warning instead, as git's "would clobber existing
tag"); a hostile tag on the remote (wrong shape, a bad name in its key, a snapshot nobody
holds) is refused with a warning and nothing of it is written."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import fsspec

from repro.canonical import packb
from repro.tags import Tag
from tests.conftest import AWS_ENV, run_cli
from tests.test_tags import two_states


def cli_at(root, *args, ok=None):
    return run_cli(list(args), root, env=AWS_ENV, check=ok)


def put_on_remote(url: str, options: list[str], key: str, data: bytes) -> None:
    """Write `data` at `key` on the remote as another machine (or an attacker) would."""
    opts = dict(o.split("=", 1) for o in options)
    if url.startswith("s3://"):
        opts = {"client_kwargs": {"endpoint_url": opts["endpoint_url"]}, **AWS_ENV_S3}
    with fsspec.open(f"{url}/{key}", "wb", **opts) as f:
        f.write(data)


AWS_ENV_S3 = {"key": AWS_ENV["AWS_ACCESS_KEY_ID"], "secret": AWS_ENV["AWS_SECRET_ACCESS_KEY"]}


def local_tags(root) -> list[str]:
    d = Path(root, ".repro", "cache", "tags")
    return sorted(os.listdir(d)) if d.is_dir() else []


def test_tags_push_pull_clobber_and_hostile(project, tmp_path, remote_url) -> None:
    url, options = remote_url
    root = project.root
    s1, s2 = two_states(project, lambda *a, ok=None: cli_at(root, *a, ok=ok))
    args = ["remote", "add", "origin", url, "--default"]
    for o in options:
        args += ["-o", o]
    cli_at(root, *args, ok=True)
    subprocess.run(["git", "-C", root, "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", root, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "r"],
        check=True,
    )
    cli_at(root, "tag", "v1", s1, "-m", "first", ok=True)
    cli_at(root, "tag", "v2", s2, ok=True)
    cli_at(root, "push", ok=True)

    clone = str(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", root, clone], check=True)
    cli_at(clone, "pull", ok=True)
    rows = cli_at(clone, "tags", "--json", ok=True).json()
    assert {r["name"]: (r["sig"], r["message"]) for r in rows} == {
        "v1": (s1, "first"),
        "v2": (s2, ""),
    }
    cli_at(clone, "checkout", "v1", ok=True)
    assert Path(clone, "model.txt").read_text() == "v1"

    # The same name for different states here and there: neither push nor pull clobbers.
    cli_at(root, "tag", "prod", s2, ok=True)
    cli_at(clone, "tag", "prod", s1, ok=True)
    cli_at(root, "push", ok=True)
    r = cli_at(clone, "pull", ok=True)
    assert "warning:" in r.err and "prod" in r.err and "clobber" in r.err
    assert {x["name"]: x["sig"] for x in cli_at(clone, "tags", "--json", ok=True).json()}[
        "prod"
    ] == s1
    # A tag naming a snapshot that is in no store (damaged here, say) is not pushed.
    Path(clone, ".repro", "cache", "tags", "dangling").write_bytes(
        Tag("dangling", "f" * 32, "u", "h", "2026-01-01T00:00:00.000Z").encode()
    )
    r = cli_at(clone, "push", ok=True)
    assert "warning:" in r.err and "prod" in r.err
    assert "'dangling'" in r.err and "not pushed" in r.err
    assert {x["name"]: x["sig"] for x in cli_at(root, "tags", "--json", ok=True).json()}[
        "prod"
    ] == s2

    # Hostile tags on the remote: refused one by one with a warning, nothing written.
    good = {"format": 1, "name": "", "sig": s1, "user": "u", "host": "h", "time": "x"}
    put_on_remote(url, options, "tags/evil", packb({**good, "name": "evil", "sig": "../../x"}))
    put_on_remote(url, options, "tags/-rf", packb({**good, "name": "-rf"}))
    put_on_remote(url, options, "tags/renamed", packb({**good, "name": "other"}))
    ghost = "0" * 32
    put_on_remote(
        url,
        options,
        "tags/ghost",
        packb({**good, "name": "ghost", "sig": ghost, "time": "2026-01-01T00:00:00.000Z"}),
    )
    before = local_tags(clone)
    r = cli_at(clone, "pull")
    assert r.code == 0 and "Traceback" not in r.err, r.err
    warned = [ln for ln in r.err.splitlines() if ln.startswith("warning:")]
    for name in ("evil", "-rf", "renamed", "ghost"):
        assert any(name in ln for ln in warned), (name, r.err)
    assert local_tags(clone) == before
    assert "ghost" not in cli_at(clone, "tags", ok=True).out
