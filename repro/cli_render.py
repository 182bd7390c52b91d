"""(being written: issue 13)."""

from __future__ import annotations
