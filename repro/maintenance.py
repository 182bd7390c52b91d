"""`repro gc` and `repro fsck`: keep the cache to what matters, and prove it is intact.

The two live in `repro.gc` and `repro.fsck`; their names stay importable from here.
"""

from __future__ import annotations

from repro.fsck import FsckReport, fsck, meta_ok, upload_verified, verify_remote
from repro.gc import GcReport, gc, good_snapshots, keep_saved_days, kept_snapshots, reachable

__all__ = [
    "FsckReport",
    "GcReport",
    "fsck",
    "gc",
    "good_snapshots",
    "keep_saved_days",
    "kept_snapshots",
    "meta_ok",
    "reachable",
    "upload_verified",
    "verify_remote",
]
