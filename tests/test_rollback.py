"""`repro rollback` (issue 12): back to the previous tagged version by default, or to any named
state; recorded as a run of kind `rollback` (from, to, argv) that `repro log` shows; content
not in the cache is saved before it is overwritten, never lost."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import one_error, write
from tests.test_tags import two_states


def lock_params(root) -> dict:
    return json.loads(Path(root, "repro.lock").read_text())["stages"]["train"]["params"]


def test_rollback_default_explicit_and_recorded(project, cli) -> None:
    root = project.root
    s1, s2 = two_states(project, cli)
    assert "nothing to roll back to" in one_error(cli("rollback"))  # no tags yet
    cli("tag", "v1", s1, ok=True)
    cli("tag", "v2", s2, ok=True)

    out = cli("rollback", "--json", ok=True).json()  # at v2: back to v1
    assert (out["from"], out["to"], out["tags"]) == (s2, s1, ["v1"])
    assert Path(root, "model.txt").read_text() == "v1"
    assert lock_params(root) == {"params.yaml:lr": 0.1}
    status = cli("status", "--json", ok=True).json()
    assert all(st["state"] == "up-to-date" for st in status["stages"])

    row = cli("log", "--json", ok=True).json()[0]
    assert (row["kind"], row["snapshot"], row["run_id"]) == ("rollback", s1, out["run_id"])
    rec = cli("show", out["run_id"], "--json", ok=True).json()
    assert rec["rollback_from"] == s2 and "rollback" in rec["argv"]
    assert "rollback" in cli("log", ok=True).out.splitlines()[0]

    # At v1, the oldest tag: nothing older to go back to.
    err = one_error(cli("rollback"))
    assert "nothing to roll back to" in err and "v1" in err

    cli("rollback", "v2", ok=True)  # by tag name
    assert Path(root, "model.txt").read_text() == "v2"
    text = cli("rollback", s1[:8], ok=True).out  # by sig prefix
    assert "rolled back" in text and s1[:12] in text and "v1" in text
    assert Path(root, "model.txt").read_text() == "v1"
    kinds = [r["kind"] for r in cli("log", "--json", ok=True).json()]
    assert kinds[:3] == ["rollback"] * 3


def test_rollback_never_loses_unsaved_work(project, cli) -> None:
    root = project.root
    s1, _s2 = two_states(project, cli)
    cli("tag", "v1", s1, ok=True)
    write(root, "model.txt", "hand-tuned, in no cache")
    write(root, "train.py", "open('model.txt', 'w').write('v3, unsaved')\n")
    out = cli("rollback", "--json", ok=True).json()
    saved = {s["path"]: s["hash"] for s in out["saved"]}
    assert set(saved) == {"model.txt", "train.py"}
    assert Path(root, "model.txt").read_text() == "v1"
    cli("restore", saved["model.txt"], "model.txt", "--force", ok=True)
    assert Path(root, "model.txt").read_text() == "hand-tuned, in no cache"
    cli("restore", saved["train.py"], "train.py", "--force", ok=True)
    assert "v3, unsaved" in Path(root, "train.py").read_text()


def test_rollback_to_an_unknown_name_changes_nothing(project, cli) -> None:
    two_states(project, cli)
    before = Path(project.root, "repro.lock").read_bytes()
    assert "no-such-tag" in one_error(cli("rollback", "no-such-tag"))
    assert Path(project.root, "repro.lock").read_bytes() == before
    assert all(r["kind"] != "rollback" for r in cli("log", "--json", ok=True).json())
