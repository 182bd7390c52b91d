"""The run cache: stage signature → output hashes and the run that made them.

Stored as `runs/<signature>` (canonical msgpack) in the same store as the objects, so a remote
shares its run cache exactly as it shares its objects.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from repro.canonical import packb, unpackb
from repro.errors import ReproError, first_line
from repro.model import PathHash
from repro.store.backend import Backend
from repro.store.layout import RUNCACHE_FORMAT, check_format, runcache_key


@dataclass
class RunCacheEntry:
    signature: str
    stage: str
    outs: dict[str, PathHash]
    run_id: str
    created: float

    def encode(self) -> bytes:
        return packb(
            {
                "format": RUNCACHE_FORMAT,
                "signature": self.signature,
                "stage": self.stage,
                "run_id": self.run_id,
                "created": self.created,
                "outs": {p: h.to_dict() for p, h in self.outs.items()},
            }
        )

    @classmethod
    def decode(cls, data: bytes, source: str = "run-cache entry") -> RunCacheEntry:
        """Parse an entry, checking every field (it may come from a shared remote): the
        signature is a hash, output paths are safe project-relative paths that no one else
        owns, output records are well-formed. Raises UntrustedInputError naming `source`, or
        NewerFormatError for an entry a newer repro wrote in a format this one cannot read;
        fields this repro does not know are ignored."""
        from repro.errors import UntrustedInputError
        from repro.safety import safe_hash, safe_path_hash, safe_rel

        d: Any = unpackb(data)
        if not isinstance(d, dict):
            raise UntrustedInputError(source, "entry", type(d).__name__, "is not a mapping")
        check_format(d, RUNCACHE_FORMAT, source)
        signature = safe_hash(d.get("signature"), source, "signature")
        stage = d.get("stage")
        if not isinstance(stage, str) or not stage:
            raise UntrustedInputError(source, "stage", stage, "is not a stage name")
        outs = d.get("outs")
        if not isinstance(outs, dict):
            raise UntrustedInputError(source, "outs", outs, "is not a mapping")
        checked = {}
        for p, h in outs.items():
            rel = safe_rel(p, source, "outs", output=True)
            checked[rel] = PathHash.from_dict(safe_path_hash(h, source, f"outs.{rel}"))
        run_id = d.get("run_id", "")
        created = d.get("created", 0)
        return cls(
            signature,
            stage,
            checked,
            run_id if isinstance(run_id, str) else "",
            float(created) if isinstance(created, int | float) else 0.0,
        )


def get_entry(backend: Backend, signature: str, where: str = "") -> RunCacheEntry | None:
    """The entry answering `signature`, or None. An entry that cannot be read, fails its field
    checks, or answers another signature (a swapped or crafted file) is refused: a miss with a
    one-line warning on stderr, never a restore of another state's outputs."""
    key = runcache_key(signature)
    source = f"run-cache entry {key}" + (f" on {where}" if where else "")
    try:
        data = backend.read_bytes(key)
    except FileNotFoundError:
        return None
    except Exception as exc:
        warn(f"{source} could not be read ({first_line(exc)}); running instead")
        return None
    try:
        entry = RunCacheEntry.decode(data, source)
    except ReproError as exc:
        warn(f"{exc.message.rstrip('.')}; running instead")
        return None
    except Exception:
        warn(f"{source} is not a valid entry; running instead")
        return None
    if entry.signature != signature:
        warn(
            f"{source} answers another signature ({entry.signature}); refusing it "
            "and running instead"
        )
        return None
    return entry


def warn(message: str) -> None:
    """One line on stderr: the run goes on (the stage runs) but the user learns why."""
    sys.stderr.write(f"warning: {message}.\n")


def put_entry(
    backend: Backend, signature: str, stage: str, outs: dict[str, PathHash], run_id: str
) -> None:
    entry = RunCacheEntry(signature, stage, outs, run_id, time.time())
    backend.write_bytes(runcache_key(signature), entry.encode())
