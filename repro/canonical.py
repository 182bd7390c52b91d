"""Canonical msgpack encoding: the one byte form every record and signature is hashed in.

Maps are written with sorted keys, so the same record gives the same bytes on every machine.
"""

from __future__ import annotations

from typing import Any

import msgpack
import xxhash


def _canon(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _canon(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    return value


def packb(value: Any) -> bytes:
    """Encode `value` canonically (sorted map keys, no floats turned into ints)."""
    return msgpack.packb(_canon(value), use_bin_type=True)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def hash_bytes(data: bytes | memoryview) -> str:
    """The repro hash of bytes: xxh3-128, 32 lowercase hex characters."""
    return xxhash.xxh3_128_hexdigest(data)


def hash_record(value: Any) -> str:
    """The hash of a record's canonical encoding (signatures, snapshot ids)."""
    return hash_bytes(packb(value))
