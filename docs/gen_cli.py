"""The CLI reference (docs/cli-reference.md in the built site), generated from the typer app.

Why generated: a hand-written list drifts from the commands; this page is made from the same
click objects that parse `repro`'s command line, so every command, argument, option and
`--help` example is in it the moment it exists. Used two ways:

- as a mkdocs hook (mkdocs.yml `hooks:`): `on_files` adds the page to the build, so nothing
  generated is committed and `make docs` is always current;
- as a script: `python docs/gen_cli.py [OUT.md]` prints (or writes) the same Markdown.

docs/cli.md stays the hand-written overview (JSON shapes, exit codes, terminal output).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

PAGE = "cli-reference.md"

INTRO = """\
# CLI reference

Generated from the `repro` command itself (`docs/gen_cli.py`, run by `make docs`): every
command and its arguments and options, as `repro COMMAND --help` prints them. The JSON shapes,
exit codes and terminal output are in [The command line](cli.md).

"""


def _root() -> Any:
    """The click group behind `repro` (every command module registered)."""
    import typer.main

    from repro.cli import app

    return typer.main.get_command(app)


def walk(group: Any | None = None, prefix: str = "repro") -> Iterator[tuple[str, Any, Any]]:
    """(full name, click command, click context) for every visible command, depth first in the
    order `--help` lists them; groups (`stage`, `remote`, ...) come before their commands.
    Duck-typed: typer ships its own copy of click, so `click.Group` is not its base class."""
    group = group or _root()
    parent = group.context_class(group, info_name=prefix)
    for name in group.list_commands(parent):
        cmd = group.get_command(parent, name)
        if cmd is None or getattr(cmd, "hidden", False):
            continue
        full = f"{prefix} {name}"
        ctx = cmd.context_class(cmd, info_name=name, parent=parent)
        yield full, cmd, ctx
        if hasattr(cmd, "list_commands"):
            yield from walk(cmd, full)


def command_names() -> list[str]:
    """Every command's full name, e.g. `repro stage add` (what the reference must list)."""
    return [name for name, _cmd, _ctx in walk()]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _help_markdown(text: str) -> list[str]:
    """click's help text as Markdown: plain lines as paragraphs, indented lines (the
    `Example:` blocks) as fenced code."""
    out: list[str] = []
    code: list[str] = []

    def flush() -> None:
        if code:
            out.extend(["", "```sh", *code, "```", ""])
            code.clear()

    for line in text.replace("\b", "").splitlines():
        if line.startswith(("  ", "\t")) and line.strip():
            code.append(line.strip())
            continue
        flush()
        out.append(line.rstrip())
    flush()
    return out


def _param_row(param: Any, ctx: Any) -> str | None:
    if getattr(param, "hidden", False):
        return None
    if getattr(param, "param_type_name", "") == "argument":
        name = f"`{param.human_readable_name}`"
        return f"| {name} | argument | {_cell(getattr(param, 'help', None) or '')} |"
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    kind = "flag" if getattr(param, "is_flag", False) else _cell(_metavar(param, ctx))
    help_text = _cell(getattr(param, "help", None) or "")
    default = param.default
    if default not in (None, False, (), []) and not callable(default):
        help_text += f" (default: `{_cell(str(default))}`)"
    return f"| {names} | {kind} | {help_text} |"


def _takes_ctx(param: Any) -> bool:
    import inspect

    return "ctx" in inspect.signature(param.make_metavar).parameters


def _metavar(param: Any, ctx: Any) -> str:
    return param.make_metavar(ctx) if _takes_ctx(param) else param.make_metavar()


def render() -> str:
    """The whole page as Markdown."""
    lines = [INTRO]
    for full, cmd, ctx in walk():
        depth = full.count(" ")
        lines.append(f"{'#' * min(depth + 1, 4)} `{full}`")
        lines.append("")
        pieces = " ".join(cmd.collect_usage_pieces(ctx))
        lines.extend(["```text", f"{full} {pieces}".rstrip(), "```", ""])
        lines.extend(_help_markdown(cmd.help or cmd.short_help or ""))
        lines.append("")
        rows = [r for r in (_param_row(p, ctx) for p in cmd.get_params(ctx)) if r]
        if rows:
            lines.extend(["| name | takes | does |", "| --- | --- | --- |", *rows, ""])
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated page to the site."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


def main(argv: list[str]) -> int:
    text = render()
    if len(argv) > 1:
        with open(argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
