"""The documentation: the site builds with warnings as errors, its CLI reference lists every
command of the real app, the tutorial's commands work when pasted, and the project's files point
only at what the project holds."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _all_commands() -> list[str]:
    """Every visible command of the real app, walked here independently of docs/gen_cli.py
    (duck-typed: typer ships its own copy of click)."""
    import typer.main

    from repro.cli import app

    names: list[str] = []

    def walk(group, prefix: str) -> None:
        ctx = group.context_class(group, info_name=prefix)
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            names.append(f"{prefix} {name}")
            if hasattr(cmd, "list_commands"):
                walk(cmd, f"{prefix} {name}")

    walk(typer.main.get_command(app), "repro")
    return names


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for mod in ("mkdocs", "material"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed (the 'docs' extra: pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run(
        # no -q: mkdocs 1.6 then stops counting warnings, and --strict passes anything
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout}\n{r.stderr}"
    return out


def test_site_builds_strict_with_every_page(site: Path) -> None:
    pages = sorted(p.stem for p in DOCS.glob("*.md"))
    missing = [p for p in pages if not (site / f"{p}.html").is_file()]
    assert not missing, f"pages left out of the site: {missing}"
    # In the nav, not only built: the home page's navigation links to each of them.
    home = (site / "index.html").read_text(encoding="utf-8")
    unlinked = [p for p in pages if p != "index" and f'href="{p}.html' not in home]
    assert not unlinked, f"pages missing from the nav: {unlinked}"


def test_cli_reference_lists_every_command(site: Path) -> None:
    html = (site / "cli-reference.html").read_text(encoding="utf-8")
    commands = _all_commands()
    assert {"repro run", "repro stage add", "repro remote add"} <= set(commands)
    absent = [c for c in commands if f"<code>{c}</code>" not in html]
    assert not absent, f"commands missing from the CLI reference: {absent}"
    # Options come from the app too: `repro run`'s `--dry-run` and its help text.
    assert "--dry-run" in html and "Say what would happen." in html


def test_gen_cli_script_prints_the_reference() -> None:
    r = subprocess.run(
        [sys.executable, str(DOCS / "gen_cli.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    headings = re.findall(r"^#+ `(repro[^`]*)`$", r.stdout, re.M)
    assert headings == _all_commands()
    assert "```sh\nrepro run -j 4\n" in r.stdout  # a --help example, as code


def _tutorial_script() -> str:
    text = (DOCS / "tutorial.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) >= 8, "the tutorial lost its commands"
    return "set -euo pipefail\n" + "\n".join(blocks)


def test_tutorial_commands_run_as_pasted(tmp_path: Path) -> None:
    """Every `sh` block of docs/tutorial.md, pasted in order into bash, succeeds, and does what
    the prose says: the param change reruns, the revert restores from the run cache."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "CI": "1",
    }
    r = subprocess.run(
        ["bash", "-c", _tutorial_script()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"tutorial failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    out = r.stdout
    assert "count: ran (params: params.json:count.min_len)" in out
    assert "count: restored from cache" in out and "summarize: restored from cache" in out
    assert out.count('{"distinct": 10, "total": 15}') >= 3  # first run, revert, checkout
    assert "count.min_len" in out and "distinct" in out  # params diff, metrics diff
    assert (tmp_path / "repro-tour-remote").is_dir()  # pushed


def test_project_files_point_only_at_the_project() -> None:
    """The README and docs name no file outside the repository, and each docs/ path the README
    names exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../shared" not in readme
    named = set(re.findall(r"`(docs/[\w./-]+)`", readme))
    assert "docs/contract.md" in named
    missing = [p for p in sorted(named) if not (ROOT / p).exists()]
    assert not missing, f"README names missing files: {missing}"
    contract = (DOCS / "contract.md").read_text(encoding="utf-8")
    assert contract.startswith("# repro — the design contract")
    assert "## Packaging" in contract and "## Trust boundaries" in contract


def test_readme_first_screen_keeps_demo_and_test() -> None:
    first = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:25])
    assert "make demo" in first and "make test" in first
    targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    assert {"demo", "test", "docs"} <= set(targets)


def test_new_project_templates_point_at_real_docs(tmp_path: Path) -> None:
    """`repro init` writes repro.yaml and .repro/config.toml whose comments name documentation
    that exists (no made-up web address), and the section they name is there."""
    r = run_cli(["init"], cwd=tmp_path)
    assert r.code == 0, r.err
    spec = (tmp_path / "repro.yaml").read_text(encoding="utf-8")
    config = (tmp_path / ".repro" / "config.toml").read_text(encoding="utf-8")
    for text in (spec, config):
        assert "http" not in text
        named = re.findall(r"docs/[\w.-]+\.md", text)
        assert named and all((ROOT / p).is_file() for p in named), named
    assert "repro stage add --help" in spec
    assert '"Configuration"' in config
    assert "## Configuration" in (DOCS / "cli.md").read_text(encoding="utf-8")
    assert "config.local.toml" in config  # where the credentials go instead
