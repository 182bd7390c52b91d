"""(being written: issue 16)."""

from __future__ import annotations

from repro.cli_app import app  # noqa: F401
