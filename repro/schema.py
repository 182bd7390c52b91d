"""Table schemas of data files: column names and types beside the content hash, so `repro diff`
can say "schema changed" apart from "values changed". CSV is read from its first rows (streamed,
never whole); Parquet through pyarrow's footer, when the `parquet` extra is installed."""

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


def csv_schema(path: str) -> list[list[str]] | None:
    try:
        with open(path, newline="", errors="replace") as f:
            reader = csv.reader(f)
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


def parquet_schema(path: str) -> list[list[str]] | None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    try:
        schema = pq.read_schema(path)
    except Exception:
        return None
    return [[f.name, str(f.type)] for f in schema]


def schema_of(path: str) -> list[list[str]] | None:
    ext = os.path.splitext(path)[1].lower()
    if ext in (".csv", ".tsv"):
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
                    if os.path.splitext(f)[1].lower() in (".csv", ".tsv", ".parquet"):
                        fp = os.path.join(d, f)
                        s = schema_of(fp)
                        if s is not None:
                            out[os.path.relpath(fp, root).replace(os.sep, "/")] = s
    return out
