"""Errors repro reports to users.

Every error a user can cause or meet carries one clear sentence (naming the file, stage and key
where there is one) and an exit code. The CLI turns them into stderr lines and exit codes in one
place (`repro.cli.main`); the Python API raises them as they are.
"""

from __future__ import annotations


class ReproError(Exception):
    """Base class: a user-facing message and the process exit code it maps to."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def first_line(exc: BaseException) -> str:
    """An exception as a short clause for a one-sentence message (first line, 200 chars)."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


class UsageError(ReproError):
    """The command line itself is wrong (unknown option value, conflicting flags)."""

    exit_code = 2


class NotAProjectError(ReproError):
    """No `.repro/` folder above the working directory."""


class PathError(ReproError):
    """A path that does not exist, cannot be read, or lies outside the project."""


class SpecError(ReproError):
    """`repro.yaml` (or a params file) is malformed or inconsistent."""


class HashError(ReproError):
    """Hashing failed (unreadable file, file vanished, I/O error)."""


class CorruptObjectError(ReproError):
    """An object's content does not match its hash."""


class MissingObjectError(ReproError):
    """An object a state needs is in no cache that was asked."""


class StageFailedError(ReproError):
    """A stage's command failed or did not produce a declared output."""


class LockHeldError(ReproError):
    """Another repro process holds the project's run lock."""


class MissingExtraError(ReproError):
    """A feature needs an optional dependency that is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs the '{extra}' extra: pip install 'repro[{extra}]'.")


class NotFoundError(ReproError):
    """A snapshot, run or stage that the user named does not exist (or is ambiguous)."""


class WorkspaceConflictError(ReproError):
    """An operation would overwrite workspace content that is not in the cache."""


class UntrustedInputError(PathError):
    """A record from outside (a remote, a lock from git, a snapshot, a tree) or a workspace
    symlink would make repro read or write outside the project, or names a malformed hash.

    The message is composed from the fields: where the record came from, which field, the value,
    and what is wrong with it."""

    def __init__(self, source: str, field: str, value: object, problem: str) -> None:
        self.source = source
        self.field = field
        self.value = value
        self.problem = problem
        shown = repr(value) if not isinstance(value, str) else repr(value[:200])
        super().__init__(f"{source}: {field} {shown} {problem}; refusing to use it.")
