"""(being written: issue 13, progress)."""

from __future__ import annotations
