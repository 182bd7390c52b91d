"""The run cache: stage signature → output hashes and the run that made them.

Stored as `runs/<signature>` (canonical msgpack) in the same store as the objects, so a remote
shares its run cache exactly as it shares its objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from repro.canonical import packb, unpackb
from repro.store.backend import Backend
from repro.workspace import PathHash


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
                "signature": self.signature,
                "stage": self.stage,
                "run_id": self.run_id,
                "created": self.created,
                "outs": {p: h.to_dict() for p, h in self.outs.items()},
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> RunCacheEntry:
        d: dict[str, Any] = unpackb(data)
        return cls(
            d["signature"],
            d["stage"],
            {p: PathHash.from_dict(h) for p, h in d["outs"].items()},
            d.get("run_id", ""),
            float(d.get("created", 0)),
        )


def runcache_key(signature: str) -> str:
    return f"runs/{signature}"


def get_entry(backend: Backend, signature: str) -> RunCacheEntry | None:
    try:
        return RunCacheEntry.decode(backend.read_bytes(runcache_key(signature)))
    except FileNotFoundError:
        return None
    except Exception:
        return None  # an unreadable entry is a miss, never a wrong restore


def put_entry(
    backend: Backend, signature: str, stage: str, outs: dict[str, PathHash], run_id: str
) -> None:
    entry = RunCacheEntry(signature, stage, outs, run_id, time.time())
    backend.write_bytes(runcache_key(signature), entry.encode())
