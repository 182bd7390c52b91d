"""The storage layout: every prefix and key a store holds, and the record formats' versions.

One owner, so no module spells `runs/` or `records/` itself (DESIGN.md, storage layout; `packs/`
and `manifests/` are spelt by the modules that own their formats):

    objects/<2 hex>/<30 hex>      content, trees included (loose: large objects, old caches)
    packs/<pack id>.pack|.idx     small objects packed together, and each pack's index
                                  (format and lookup: repro.store.packs)
    manifests/<hash>              remotes only: a large object as its content-defined chunks
                                  (repro.store.chunks); the chunks are ordinary objects
    runs/<stage signature>        run-cache entry (msgpack)
    snapshots/<snapshot id>       snapshot (msgpack)
    records/<run id>              run record (msgpack)
    tags/<name>                   tag: a name for a snapshot (msgpack)
    exps/<name>                   experiment record (msgpack; carried by `exp push/pull`)

Records carry a `"format"` number. Decoding is forward-compatible: fields this repro does not
know are ignored (an older repro keeps reading what a newer one wrote beside them), while a
record whose format *number* is newer than this repro reads is refused with one sentence, since
its meaning may have changed in ways that ignoring fields cannot cover.
"""

from __future__ import annotations

from typing import Any

from repro.errors import NewerFormatError

OBJECTS = "objects"
RUNS = "runs"
SNAPSHOTS = "snapshots"
RECORDS = "records"
EXPS = "exps"  # not in META either: `repro exp push/pull` carry experiment records
TAGS = "tags"  # not in META: push and pull carry tags themselves (never clobbering one)
META = (RUNS, SNAPSHOTS, RECORDS)  # the metadata folders, in the order a push sends them

RUNCACHE_FORMAT = 1
SNAPSHOT_FORMAT = 1
RECORD_FORMAT = 1
TAG_FORMAT = 1
EXP_FORMAT = 1


def object_key(h: str) -> str:
    return f"{OBJECTS}/{h[:2]}/{h[2:]}"


def runcache_key(signature: str) -> str:
    return f"{RUNS}/{signature}"


def snapshot_key(sig: str) -> str:
    return f"{SNAPSHOTS}/{sig}"


def record_key(run_id: str) -> str:
    return f"{RECORDS}/{run_id}"


def tag_key(name: str) -> str:
    return f"{TAGS}/{name}"


def exp_key(name: str) -> str:
    return f"{EXPS}/{name}"


def folder_of(key: str) -> str:
    """The top folder of a store key (`runs` for `runs/<sig>`)."""
    return key.partition("/")[0]


def name_of(key: str) -> str:
    """What a metadata key names: the signature, snapshot id or run id after the folder."""
    return key.partition("/")[2]


def object_hash(key: str) -> str:
    """The hash an `objects/ab/cdef…` key stores."""
    return name_of(key).replace("/", "")


def check_format(d: dict[str, Any], current: int, source: str) -> None:
    """Refuse a decoded record written in a format newer than `current`.

    A record without the field predates format versions and reads as format 1; a field that is
    not a whole number is left for the record's own checks (it is not a newer format)."""
    found = d.get("format", 1)
    if isinstance(found, int) and not isinstance(found, bool) and found > current:
        raise NewerFormatError(source, found, current)
