"""Named versions and going back: `repro tag`, `tags`, `rollback` and `install-hooks`."""

from __future__ import annotations

from repro.cli_app import app  # noqa: F401
