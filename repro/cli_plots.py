"""(being written: issue 13)."""

from __future__ import annotations

from repro.cli_app import app  # noqa: F401
