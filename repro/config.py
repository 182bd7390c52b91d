"""`.repro/config.toml`: cache link methods, remotes, diff policy. Committed to git, so it never
holds credentials (those come from the environment and the usual cloud config files)."""

from __future__ import annotations

import os
from typing import Any

from repro.errors import SpecError

CONFIG_TEMPLATE = """\
# repro project configuration (committed to git; never put credentials here).
[cache]
# How outputs are put into the workspace from the cache, fastest first.
# Default: ["reflink", "hardlink", "copy"]; as root ["reflink", "copy"], since root can write
# into a read-only hardlinked object and so change the cache.
# link = ["reflink", "hardlink", "copy"]
"""


def load_config(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise SpecError(f"{path}: not valid TOML ({exc}).") from None


def save_config(path: str, config: dict[str, Any]) -> None:
    import tomli_w

    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        tomli_w.dump(config, f)
    os.replace(tmp, path)
