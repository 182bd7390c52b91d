"""`repro.lock`: what the last run produced, per stage, plus the hashes of tracked data.

Written as sorted, indented JSON — which is also valid YAML — so it loads in well under a
millisecond (no-op runs and `status` read it every time), diffs line by line in review, and any
YAML or JSON tool reads it. Written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from repro.errors import SpecError

LOCK_SCHEMA = 1


@dataclass
class Lock:
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # image reference -> locked digest

    def to_json(self) -> str:
        doc = {
            "schema": LOCK_SCHEMA,
            "stages": self.stages,
            "data": self.data,
            "images": self.images,
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def load_lock(path: str) -> Lock:
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return Lock()
    if not text.strip():
        return Lock()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        try:
            from ruamel.yaml import YAML

            doc = YAML(typ="safe").load(text)
        except Exception as exc:
            raise SpecError(f"{os.path.basename(path)}: cannot be parsed ({exc}).") from None
    if not isinstance(doc, dict) or doc.get("schema", LOCK_SCHEMA) != LOCK_SCHEMA:
        raise SpecError(f"{os.path.basename(path)}: unknown lock schema; is repro too old?")
    return Lock(
        dict(doc.get("stages") or {}), dict(doc.get("data") or {}), dict(doc.get("images") or {})
    )


def save_lock(path: str, lock: Lock) -> None:
    text = lock.to_json()
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
