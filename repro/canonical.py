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


HASHES = ("xxh3", "blake3")
_algorithm = "xxh3"
_digest: Any = xxhash.xxh3_128_hexdigest
_new: Any = xxhash.xxh3_128


class _Blake3:
    """BLAKE3 cut to 128 bits, so every hash keeps DESIGN.md's form (32 hex characters)."""

    __slots__ = ("_h",)

    def __init__(self) -> None:
        import blake3

        self._h = blake3.blake3(max_threads=blake3.blake3.AUTO)

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest(length=16)


def _blake3_digest(data: bytes | memoryview) -> str:
    import blake3

    return blake3.blake3(data).hexdigest(length=16)


def use_hash(name: str) -> None:
    """Choose the content hash for this process: `xxh3` (the default: fast, not
    cryptographic) or `blake3` (for caches that untrusted writers share; see docs/security.md).
    A project sets it from `[core] hash` in `.repro/config.toml` when it opens."""
    global _algorithm, _digest, _new
    if name == _algorithm:
        return
    if name == "blake3":
        try:
            import blake3  # noqa: F401
        except ImportError:
            from repro.errors import MissingExtraError

            raise MissingExtraError("hash = 'blake3'", "secure") from None
        _algorithm, _digest, _new = name, _blake3_digest, _Blake3
    elif name == "xxh3":
        _algorithm, _digest, _new = name, xxhash.xxh3_128_hexdigest, xxhash.xxh3_128
    else:
        from repro.errors import SpecError

        raise SpecError(
            f".repro/config.toml: [core] hash must be one of {', '.join(HASHES)}, not {name!r}."
        )


def hash_algorithm() -> str:
    return _algorithm


def content_hasher() -> Any:
    """A streaming hasher (`update`, `hexdigest`) of the chosen algorithm."""
    return _new()


def hash_bytes(data: bytes | memoryview) -> str:
    """The repro hash of bytes: xxh3-128 (or BLAKE3-128), 32 lowercase hex characters."""
    return _digest(data)


def hash_record(value: Any) -> str:
    """The hash of a record's canonical encoding (signatures, snapshot ids)."""
    return hash_bytes(packb(value))
