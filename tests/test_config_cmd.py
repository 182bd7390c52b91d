"""`repro config` and `.repro/config.local.toml` through the real CLI: comments survive, bad
keys and values are refused in one sentence with the file unchanged, the local file wins and
stays out of git and out of the committed file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import git


def _cfg(project) -> Path:
    return Path(project.root, ".repro", "config.toml")


def test_set_get_unset_keeps_comments(project, cli) -> None:
    cfg = _cfg(project)
    cfg.write_text('# my note\n[cache]\n# about links\nlink = ["copy"]  # trailing\n')
    cli("config", "--set", "gc.keep_saved_days", "7", ok=True)
    cli("config", "--set", "cache.link", '["hardlink", "copy"]', ok=True)
    text = cfg.read_text()
    assert "# my note" in text and "# about links" in text
    assert 'link = ["hardlink", "copy"]' in text and "keep_saved_days = 7" in text
    assert cli("config", "--get", "gc.keep_saved_days", ok=True).out.strip() == "7"
    assert cli("config", "--list", "--json", ok=True).json()["cache.link"] == ["hardlink", "copy"]
    cli("config", "--unset", "gc.keep_saved_days", ok=True)
    assert "keep_saved_days" not in cfg.read_text() and "# my note" in cfg.read_text()
    r = cli("config", "--get", "gc.keep_saved_days")
    assert r.code == 1 and "no key 'gc.keep_saved_days'" in r.err


def test_bad_keys_and_values_change_nothing(project, cli) -> None:
    cfg = _cfg(project)
    before = cfg.read_bytes()
    cases = {
        ("cache.links", '["copy"]'): "did you mean 'cache.link'",
        ("cache.link", '["symlink"]'): "'symlink' is not supported",
        ("dask.workers", "0"): "dask.workers",
        ("nosuch.key", "1"): "unknown section 'nosuch'",
        ("novalue", "1"): "SECTION.NAME",
    }
    for (key, value), words in cases.items():
        r = cli("config", "--set", key, value)
        assert r.code != 0 and words in r.err, (key, r.err)
        assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
        assert cfg.read_bytes() == before
    r = cli("config", "--get", "x.y", "--list")
    assert r.code == 2


def test_unknown_key_in_known_section_is_an_error_on_load(project, cli) -> None:
    _cfg(project).write_text('[cache]\nlinks = ["copy"]\n')
    r = cli("status")
    assert r.code == 1 and "unknown key 'cache.links'" in r.err and "cache.link" in r.err
    # an unknown section is left alone: a newer repro's config still loads here; an
    # executor's own table under [run] is its own business
    _cfg(project).write_text("[future_feature]\nx = 1\n[run.myexec]\nworkers = 4\n")
    assert cli("status").code == 0


def test_local_config_wins_is_ignored_by_git_and_never_committed(project, cli) -> None:
    cli("config", "--local", "--set", "dask.workers", "3", ok=True)
    local = Path(project.root, ".repro", "config.local.toml")
    assert "workers = 3" in local.read_text()
    assert "workers" not in _cfg(project).read_text()
    assert cli("config", "--get", "dask.workers", ok=True).out.strip() == "3"
    cli("config", "--set", "dask.workers", "8", ok=True)  # the local value still wins
    assert cli("config", "--get", "dask.workers", ok=True).out.strip() == "3"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".repro/config.local.toml"], cwd=project.root
    )
    assert ignored.returncode == 0
    git(project.root, "add", "-A")
    assert "config.local.toml" not in git(project.root, "ls-files")
    # a command that rewrites the committed file leaves the local values out of it
    cli("config", "--local", "--set", "core.follow_symlinks", "true", ok=True)
    cli("remote", "add", "origin", str(Path(project.root).parent / "remote"), ok=True)
    assert "follow_symlinks" not in _cfg(project).read_text()
    # a bad value in the local file: one sentence naming it
    local.write_text("[dask]\nworkers = -1\n")
    r = cli("status")
    assert r.code == 1 and "config.local.toml" in r.err and "dask.workers" in r.err
