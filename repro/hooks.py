"""`repro install-hooks`: git hooks that keep the workspace and repro.lock in step with git.

- pre-commit: warns when stages are stale (`repro status --exit-code`); it never blocks a commit.
- post-checkout (branch checkouts) and post-merge: `repro checkout` of the new `repro.lock`,
  without --force, so content not in the cache is saved before it is overwritten. A failure is
  printed and git's own command still succeeds.

Each hook is a small sh script that finds `repro` on PATH (and says what to do when it is not
there), changes to the project's folder (the project may sit below the repository's top), and
then runs any hook it replaced (`<hook>.repro-backup`), so that one keeps working. The hooks go
where git looks for them (`core.hooksPath` is honoured). A hook repro did not write is left
alone unless `force`; re-running is idempotent.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass

from repro.errors import ReproError
from repro.project import Project

HOOKS = ("pre-commit", "post-checkout", "post-merge")
MARKER = "# repro-hook v1"
BACKUP = ".repro-backup"

_PRE_COMMIT = """\
  out=$(repro status --exit-code 2>&1)
  case $? in
    0) ;;
    1) echo "repro: some stages are stale (the commit goes on; 'repro run' updates them):" >&2
       printf '%s\\n' "$out" >&2 ;;
    *) echo "repro hook (pre-commit): 'repro status' failed (the commit goes on):" >&2
       printf '%s\\n' "$out" >&2 ;;
  esac"""

_CHECKOUT = """\
  [ -f repro.lock ] || return 0
  if ! repro checkout; then
    echo "repro hook ({hook}): 'repro checkout' failed (above); git's own command is done." >&2
    echo "  Fix the cause and run 'repro checkout' (nothing unsaved was overwritten)." >&2
  fi"""

_SCRIPT = """\
#!/bin/sh
{marker}: {hook} (written by 'repro install-hooks'; run it again to update, or delete this file)
repro_hook() {{
  if ! command -v repro >/dev/null 2>&1; then
    echo "repro hook ({hook}): 'repro' is not on PATH; install repro or activate its" >&2
    echo "  virtualenv, or delete this hook. (git's own command goes on.)" >&2
    return 0
  fi
  top=$(git rev-parse --show-toplevel 2>/dev/null) || return 0
  cd "$top"/{prefix} 2>/dev/null || return 0
{body}
}}
(repro_hook "$@")
if [ -x "$0{backup}" ]; then exec "$0{backup}" "$@"; fi
exit 0
"""


@dataclass
class HookAction:
    hook: str
    path: str
    action: str  # installed | updated | unchanged | replaced | skipped
    note: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"hook": self.hook, "path": self.path, "action": self.action, "note": self.note}


def _git(cwd: str, *args: str) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def hooks_dir(project: Project) -> tuple[str, str]:
    """(the folder git runs hooks from, the project's path below the repository's top)."""
    top = _git(project.root, "rev-parse", "--show-toplevel")
    if not top:
        raise ReproError(
            f"install-hooks: {project.root} is not in a git work tree; 'git init' it first."
        )
    where = _git(top, "rev-parse", "--git-path", "hooks")
    if not where:
        raise ReproError(f"install-hooks: git could not say where the hooks of {top} go.")
    prefix = os.path.relpath(os.path.realpath(project.root), os.path.realpath(top))
    folder = os.path.normpath(os.path.join(top, where))
    _check_hooks_folder(top, folder)
    return folder, "" if prefix == "." else prefix


def _check_hooks_folder(top: str, folder: str) -> None:
    """A hooks folder in the work tree (`core.hooksPath = .githooks`) came with the repository:
    a symlink there must not lead the hooks' writes out of it. One in the git folder, or
    anywhere else `core.hooksPath` names, is this machine's own choice."""
    from repro.errors import UntrustedInputError

    git_dir = _git(top, "rev-parse", "--path-format=absolute", "--git-common-dir") or ""

    def inside(p: str, base: str) -> bool:
        return bool(base) and (p == base or p.startswith(base.rstrip(os.sep) + os.sep))

    if not inside(folder, top) or inside(folder, os.path.normpath(git_dir)):
        return
    real = os.path.realpath(folder)
    if inside(real, os.path.realpath(top)) or inside(real, os.path.realpath(git_dir)):
        return
    raise UntrustedInputError(
        "core.hooksPath",
        "folder",
        os.path.relpath(folder, top),
        f"leads out of the repository (to {real})",
    )


def script(hook: str, prefix: str) -> str:
    """The text of repro's `hook`, for a project at `prefix` below the repository's top."""
    body = _PRE_COMMIT if hook == "pre-commit" else _CHECKOUT.format(hook=hook)
    if hook == "post-checkout":  # its third argument is 0 for `git checkout -- FILE`: skip;
        # so is a checkout that leaves HEAD where it was (`git checkout -b NEW`): same repro.lock
        body = '  [ "$3" = "0" ] && return 0\n  [ "$1" = "$2" ] && return 0\n' + body
    return _SCRIPT.format(
        marker=MARKER,
        hook=hook,
        prefix=shlex.quote(prefix) if prefix else '""',
        body=body,
        backup=BACKUP,
    )


def _is_ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(512)
    except OSError:
        return False
    return MARKER in head and not os.path.islink(path)


def _write(path: str, text: str) -> None:
    """A new file created exclusively beside `path` (never through a symlink planted in a
    committed hooks folder), then renamed over it."""
    from repro.atomicfile import write_atomic

    write_atomic(path, text.encode("utf-8"), 0o755, prefix=f".{os.path.basename(path)}.")


def install_hook(folder: str, hook: str, text: str, force: bool) -> HookAction:
    path = os.path.join(folder, hook)
    if not os.path.lexists(path):
        _write(path, text)
        return HookAction(hook, path, "installed")
    if _is_ours(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            if f.read() == text and os.access(path, os.X_OK):
                return HookAction(hook, path, "unchanged")
        _write(path, text)
        return HookAction(hook, path, "updated")
    backup = path + BACKUP
    if not force:
        return HookAction(
            hook,
            path,
            "skipped",
            f"{path} is not repro's hook; left alone (--force keeps it as {hook}{BACKUP} and "
            "runs it after repro's)",
        )
    if os.path.lexists(backup):
        return HookAction(
            hook,
            path,
            "skipped",
            f"{path} is not repro's hook and {hook}{BACKUP} already exists; move one of them "
            "away first",
        )
    os.replace(path, backup)
    _write(path, text)
    return HookAction(hook, path, "replaced", f"the previous hook is kept as {backup}")


def install_hooks(project: Project, force: bool = False) -> list[HookAction]:
    """Install repro's hooks where git runs them; what was done with each."""
    folder, prefix = hooks_dir(project)
    os.makedirs(folder, exist_ok=True)
    return [install_hook(folder, h, script(h, prefix), force) for h in HOOKS]
