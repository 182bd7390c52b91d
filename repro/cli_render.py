"""What the commands share to print for people: tables, colours, numbers, and progress bars.

Two faces for every text output. On a terminal (stdout a tty, or `FORCE_COLOR` set): tables
with headers fitted to the width (`COLUMNS`, else the terminal's; drawn here with rich's styles,
as rich.Table takes seconds over 10,000 rows) and colours (none at all, not even bold, when
`NO_COLOR` is set to any value). Piped: the same columns as plain aligned text with no escape
codes and no wrapping, so scripts and `grep` read it. Progress bars (rich) go to stderr, only
on a terminal and not under `CI`; the layers below see only a callback (`PhaseProgress`).

Imported lazily inside the commands (rich is loaded only when something is drawn), so `repro`
starts fast.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# What a kind of change or staleness looks like: severity, then reasons by how much they move.
SEVERITY_STYLE = {"major": "bold red", "minor": "yellow"}
REASON_STYLE = {
    "code": "magenta",
    "cmd": "magenta",
    "image": "magenta",
    "env": "magenta",
    "seed": "magenta",
    "data": "cyan",
    "params": "cyan",
    "outs": "cyan",
    "upstream": "blue",
    "missing": "bold red",
    "new": "green",
}
STATE_STYLE = {"stale": "yellow", "up to date": "green", "failed": "bold red", "ok": "green"}


# -- where output goes ------------------------------------------------------------------------
def rich_stdout() -> bool:
    """Whether stdout gets rich output: a terminal, or `FORCE_COLOR` asks for it."""
    return sys.stdout.isatty() or bool(os.environ.get("FORCE_COLOR"))


def width() -> int:
    """The width to fit: `COLUMNS` when set, else the terminal's, else 80."""
    try:
        cols = int(os.environ.get("COLUMNS", ""))
        if cols > 0:
            return cols
    except ValueError:
        pass
    import shutil  # ~1 ms (it loads bz2 and lzma): only when something is fitted

    return shutil.get_terminal_size((80, 24)).columns


def console(stderr: bool = False):
    """A rich console that honours NO_COLOR (any value: no escape codes at all) and COLUMNS."""
    from rich.console import Console

    plain = "NO_COLOR" in os.environ
    return Console(
        stderr=stderr,
        highlight=False,
        width=width(),
        color_system=None if plain else "auto",
        force_terminal=True if os.environ.get("FORCE_COLOR") and not plain else None,
        no_color=plain,
        emoji=False,
    )


def print_styled(parts: Sequence[tuple[str, str | None]], out=None) -> None:
    """One line made of (text, style) parts: styled on a terminal, plain text when piped.
    Text is never read as markup, so `[major]` prints as it is."""
    if out is None and rich_stdout():
        from rich.text import Text

        line = Text()
        for text, style in parts:
            line.append(text, style=style or "")
        _stdout_console().print(line, soft_wrap=True)
        return
    (out or sys.stdout).write("".join(t for t, _ in parts) + "\n")


_CONSOLE: list[Any] = []


def _stdout_console():
    if not _CONSOLE:
        _CONSOLE.append(console())
    return _CONSOLE[0]


# -- numbers ----------------------------------------------------------------------------------
def num(v: Any) -> str:
    """A metric as people read it: 4 significant digits, integers whole, none as '-'."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def signed(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:+.4g}" if isinstance(v, float) else f"{v:+d}" if isinstance(v, int) else str(v)


def pct(v: Any) -> str:
    return "-" if v is None else f"{v:+.1f}%"


def value(v: Any) -> str:
    """A param exactly as written (lists and mappings as JSON), none as '-'."""
    import json

    if v is None:
        return "-"
    return v if isinstance(v, str) else json.dumps(v)


def human_bytes(n: float) -> str:
    """Binary units: 1.5 KiB, 3.2 MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# -- tables -----------------------------------------------------------------------------------
@dataclass
class Column:
    """One column of a table. `drop`: at a narrow width, columns with the highest `drop` go
    first (0: never dropped). `wrap`: the column may wrap to fit (else it keeps its width)."""

    header: str
    right: bool = False
    drop: int = 0
    wrap: bool = False


Cell = str | tuple[str, str | None]  # text, or (text, style)


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


def print_table(
    columns: list[Column],
    rows: list[list[Cell]],
    *,
    header: bool = True,
    plain_header: bool = True,
) -> None:
    """A table: styled and fitted to the width on a terminal (dropping columns by their `drop`
    rank until it fits), plain aligned columns when piped (every column, no wrapping;
    `plain_header=False` leaves the header out there, for line-per-record output)."""
    if rich_stdout():
        _term_table(columns, rows, header)
        return
    texts = [[_text(c) for c in r] for r in rows]
    shown = [c.header for c in columns] if (header and plain_header) else None
    widths = [
        max([len(shown[i]) if shown else 0, *(len(r[i]) for r in texts)])
        for i in range(len(columns))
    ]

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if col.right else c.ljust(w)
            for c, w, col in zip(cells, widths, columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(shown)] if shown else []
    out += [line(r) for r in texts]
    sys.stdout.write("\n".join(out) + ("\n" if out else ""))


def _term_table(columns: list[Column], rows: list[list[Cell]], header: bool) -> None:
    """A terminal table drawn here rather than by rich.Table (which takes seconds over 10,000
    runs): natural column widths, columns dropped by `drop` rank until the table fits, the
    wrapping column given what is left, any still-too-wide column cut with '…'."""
    total = width()
    texts = [[_text(c) for c in r] for r in rows]
    keep = list(range(len(columns)))
    for rank in sorted({c.drop for c in columns if c.drop}, reverse=True):
        if _needed(columns, texts, keep, header) <= total:
            break
        keep = [i for i in keep if columns[i].drop != rank]
    widths = {i: _natural(columns, texts, i, header) for i in keep}
    _squeeze(columns, widths, keep, total)
    paint = _painter()
    out: list[str] = []
    if header:
        heads = [_align(columns[i].header, widths[i], columns[i].right) for i in keep]
        out.append(_join([paint(h, "bold") for h in heads]))
        out.append(paint("─" * min(total, sum(widths.values()) + 2 * (len(keep) - 1)), "dim"))
    for r, t in zip(rows, texts, strict=True):
        cells = {
            i: wrap(t[i], widths[i]) if columns[i].wrap else [_cut(t[i], widths[i])] for i in keep
        }
        for n in range(max(len(c) for c in cells.values())):
            parts = []
            for i in keep:
                piece = cells[i][n] if n < len(cells[i]) else ""
                piece = _align(piece, widths[i], columns[i].right)
                style = r[i][1] if isinstance(r[i], tuple) else None
                parts.append(paint(piece, style) if piece.strip() else piece)
            out.append(_join(parts))
    sys.stdout.write("\n".join(out) + "\n")


def _align(text: str, w: int, right: bool) -> str:
    return text.rjust(w) if right else text.ljust(w)


def _join(parts: list[str]) -> str:
    return "  ".join(parts).rstrip()


def _natural(columns: list[Column], texts: list[list[str]], i: int, header: bool) -> int:
    return max([len(columns[i].header) if header else 0, *(len(r[i]) for r in texts)])


def _needed(columns: list[Column], texts: list[list[str]], keep: list[int], header: bool) -> int:
    """The width the kept columns need, a wrapping one down to its longest word (12 at least)."""
    need = 2 * (len(keep) - 1)
    for i in keep:
        natural = _natural(columns, texts, i, header)
        if columns[i].wrap:
            word = max([len(w) for r in texts for w in r[i].split()] + [12])
            natural = min(natural, word)
        need += natural
    return need


def _squeeze(columns: list[Column], widths: dict[int, int], keep: list[int], total: int) -> None:
    """Narrow columns until the table fits `total`: the wrapping one first (to 12), then the
    widest others (to 8)."""
    excess = sum(widths.values()) + 2 * (len(keep) - 1) - total
    for i in keep:
        if excess > 0 and columns[i].wrap:
            give = min(excess, max(0, widths[i] - 12))
            widths[i] -= give
            excess -= give
    while excess > 0:
        i = max(keep, key=lambda k: widths[k])
        if widths[i] <= 8:
            break
        give = min(excess, widths[i] - 8)
        widths[i] -= give
        excess -= give


def _cut(text: str, w: int) -> str:
    return text if len(text) <= w else text[: max(0, w - 1)] + "…"


def wrap(text: str, w: int) -> list[str]:
    """Lines of at most `w`, broken between the cell's items (two spaces apart), else hard."""
    lines: list[str] = []
    line = ""
    for item in text.split("  "):
        while len(item) > w:
            if line:
                lines.append(line)
                line = ""
            lines.append(item[:w])
            item = item[w:]
        if not line:
            line = item
        elif len(line) + 2 + len(item) <= w:
            line += "  " + item
        else:
            lines.append(line)
            line = item
    lines.append(line)
    return lines


def _painter():
    """A function putting a rich style on text as escape codes, or leaving it plain under
    NO_COLOR (styles are cached: a long table pays once per style)."""
    if "NO_COLOR" in os.environ:
        return lambda text, style: text
    from rich.color import ColorSystem
    from rich.style import Style

    cache: dict[str, Style] = {}

    def paint(text: str, style: str | None) -> str:
        if not style:
            return text
        st = cache.get(style)
        if st is None:
            st = cache[style] = Style.parse(style)
        return st.render(text, color_system=ColorSystem.STANDARD)

    return paint


# -- progress ---------------------------------------------------------------------------------
def progress_wanted() -> bool:
    """Progress bars only for a person watching: stderr a terminal, not under CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


class PhaseProgress:
    """A progress display with known totals, phase by phase ("hash", then "store"...): files
    and bytes done of the total, binary units, speed and ETA, on stderr.

    The layers below call it: `phase(name, total_files, total_bytes)` starts a phase, then the
    object is called with bytes done (`progress(nbytes)`, the hashing engine's protocol) or
    files and bytes (`progress(files, nbytes)`, the transfer protocol); `advance(files, nbytes)`
    says the same by name. Shown only when `progress_wanted()`; otherwise callers get None and
    pay nothing."""

    def __init__(self, label: str) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.label = label
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[files]}"),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=True,
            console=console(stderr=True),
            refresh_per_second=8,
        )
        self.task = None
        self.name = ""
        self.files = 0
        self.total_files: int | None = None
        self._last = 0.0

    def __enter__(self) -> PhaseProgress:
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=None, files="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def phase(self, name: str, total_files: int | None, total_bytes: int | None) -> None:
        """Start phase `name` (hash, store, upload, download...) with its totals."""
        if self.name:  # the phase before is seen as it ended, however quick
            self.bar.refresh()
        self.name, self.files, self.total_files = name, 0, total_files
        self.bar.reset(
            self.task,
            total=total_bytes or None,
            completed=0,
            description=f"{self.label}: {name}",
            files=self._files(),
        )
        self.bar.refresh()  # every phase is seen, however quick

    def _files(self) -> str:
        if self.total_files is None:
            return f"{self.files} files" if self.files else ""
        if not self.files:  # a phase that counts only bytes (hashing) shows its file total
            return f"{self.total_files} files"
        return f"{self.files}/{self.total_files} files"

    def advance(self, files: int = 0, nbytes: int = 0) -> None:
        self.files += files
        now = time.monotonic()
        if files and (now - self._last > 0.05 or self.files == self.total_files):
            self._last = now
            self.bar.update(self.task, advance=nbytes, files=self._files())
        else:
            self.bar.advance(self.task, nbytes)

    def __call__(self, a: int, b: int | None = None) -> None:
        if b is None:
            self.advance(0, a)
        else:
            self.advance(a, b)

    @property
    def callback(self) -> PhaseProgress:
        """What to hand the layers below (the object itself: callable, with `phase`)."""
        return self


class NoProgress:
    """What `progress_for` gives when nothing is shown: a context whose callback is None."""

    callback = None

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_for(label: str) -> PhaseProgress | NoProgress:
    """A phase progress display on a terminal, or a no-op context: use `.callback`."""
    if not progress_wanted():
        return NoProgress()
    return PhaseProgress(label)
