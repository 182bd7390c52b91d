"""Table schemas of data files: column names and types beside the content hash, so `repro diff`
can say "schema changed" apart from "values changed". Delimited text (CSV, TSV, …) is read from
its first rows (streamed, never whole), its delimiter sniffed from the first 64 KiB; Parquet
through pyarrow's footer, when the `parquet` extra is installed (a warning says so otherwise)."""

from __future__ import annotations

import csv
import os
from typing import Any

SAMPLE_ROWS = 1000


def _kind(value: str) -> str:
    if value == "":
        return "null"
    try:
        int(value)
        return "int"
    except ValueError:
        pass
    try:
        float(value)
        return "float"
    except ValueError:
        return "str"


def _merge(a: str, b: str) -> str:
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"int", "float"}:
        return "float"
    return "str"


# Delimited text tables, and the delimiter each extension implies when sniffing cannot tell.
DELIMITED = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".psv": "|"}
TABLES = (*DELIMITED, ".parquet")
SNIFF_BYTES = 64 * 1024


def sniff_delimiter(path: str, prefix: str) -> str:
    """The delimiter of a text table, sniffed from `prefix` (whole lines of its start) among
    `,`, tab, `;` and `|`; the extension's delimiter when the sniffer cannot tell or ties."""
    fallback = DELIMITED.get(os.path.splitext(path)[1].lower(), ",")
    sniffer = csv.Sniffer()
    sniffer.preferred = [fallback, *(d for d in ",\t;|" if d != fallback)]
    try:
        return sniffer.sniff(prefix, delimiters=",\t;|").delimiter
    except csv.Error:
        return fallback


def csv_schema(path: str) -> list[list[str]] | None:
    try:
        with open(path, newline="", errors="replace") as f:
            prefix = f.read(SNIFF_BYTES)
            if len(prefix) == SNIFF_BYTES and "\n" in prefix:
                prefix = prefix[: prefix.rindex("\n")]  # whole lines only
            f.seek(0)
            reader = csv.reader(f, delimiter=sniff_delimiter(path, prefix))
            header = next(reader, None)
            if not header:
                return None
            kinds = ["null"] * len(header)
            for i, row in enumerate(reader):
                if i >= SAMPLE_ROWS:
                    break
                for j, v in enumerate(row[: len(header)]):
                    kinds[j] = _merge(kinds[j], _kind(v))
    except (OSError, csv.Error):
        return None
    return [[h, k] for h, k in zip(header, kinds, strict=True)]


_warned_parquet = False


def parquet_schema(path: str) -> list[list[str]] | None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        _warn_no_pyarrow(path)
        return None
    try:
        schema = pq.read_schema(path)
    except Exception:
        return None
    return [[f.name, str(f.type)] for f in schema]


def _warn_no_pyarrow(path: str) -> None:
    """One line per process: a schema silently missing would make `repro diff` report every
    Parquet change as "values changed" with no hint why."""
    global _warned_parquet
    if _warned_parquet:
        return
    _warned_parquet = True
    import sys

    sys.stderr.write(
        f"warning: {os.path.basename(path)}: Parquet schemas are not recorded without pyarrow; "
        "install the parquet extra (pip install 'repro-engine[parquet]').\n"
    )


def schema_of(path: str) -> list[list[str]] | None:
    ext = os.path.splitext(path)[1].lower()
    if ext in DELIMITED:
        return csv_schema(path)
    if ext == ".parquet":
        return parquet_schema(path)
    return None


def schemas_for(root: str, rels: list[str]) -> dict[str, Any]:
    """Schemas of the table files among `rels` (files, or files inside folders)."""
    out: dict[str, Any] = {}
    for rel in rels:
        p = os.path.join(root, rel)
        if os.path.isfile(p):
            s = schema_of(p)
            if s is not None:
                out[rel] = s
        elif os.path.isdir(p):
            for d, _, files in os.walk(p):
                for f in files:
                    if os.path.splitext(f)[1].lower() in TABLES:
                        fp = os.path.join(d, f)
                        s = schema_of(fp)
                        if s is not None:
                            out[os.path.relpath(fp, root).replace(os.sep, "/")] = s
    return out
