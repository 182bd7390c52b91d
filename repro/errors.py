"""Errors repro reports to users.

Every error a user can cause or meet carries one clear sentence (naming the file, stage and key
where there is one) and an exit code. The CLI turns them into stderr lines and exit codes in one
place (`repro.cli.main`); the Python API raises them as they are.

The main kinds carry fields (`PathError.path`, `SpecError.file`/`stage`/`key`,
`RemoteError.remote`/`url`, `NotFoundError.what`/`name`) and compose their sentence from them,
so a caller can act on the field instead of parsing the text. Each still accepts one
pre-written sentence (the fields are then None), which many raise sites use.
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


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


class PathError(ReproError):
    """A path that does not exist, cannot be read, or lies outside the project.

    `PathError(path, problem)` says "<path>: <problem>."; `PathError(message)` is the old form."""

    def __init__(self, path_or_message: str, problem: str | None = None) -> None:
        if problem is None:
            super().__init__(path_or_message)
            self.path: str | None = None
        else:
            super().__init__(_sentence(f"{path_or_message}: {problem}"))
            self.path = path_or_message
        self.problem = problem


class SpecError(ReproError):
    """`repro.yaml` (or a params file, the config, a lock) is malformed or inconsistent.

    `SpecError(file, message, stage=, key=, line=)` says
    "<file>, line <n>: stage '<s>', key '<k>': <message>." (the parts that are known), the
    form `repro.yaml`'s own checks use; `SpecError(message)` is the old form."""

    def __init__(
        self,
        file_or_message: str,
        message: str | None = None,
        stage: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.stage, self.key, self.line = stage, key, line
        if message is None:
            super().__init__(file_or_message)
            self.file: str | None = None
            return
        self.file = file_or_message
        where = file_or_message + (f", line {line}" if line else "")
        what = ([f"stage '{stage}'"] if stage else []) + ([f"key '{key}'"] if key else [])
        super().__init__(_sentence(f"{where}: {', '.join(what) + ': ' if what else ''}{message}"))


class HashError(ReproError):
    """Hashing failed (unreadable file, file vanished, I/O error)."""


class CorruptObjectError(ReproError):
    """An object's content does not match its hash."""


class MissingObjectError(ReproError):
    """An object a state needs is in no cache that was asked."""


class LockHeldError(ReproError):
    """Another repro process holds the project's run lock."""


class MissingExtraError(ReproError):
    """A feature needs an optional dependency that is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra: pip install 'repro-engine[{extra}]'."
        )


class NotFoundError(ReproError):
    """A snapshot, run, stage or remote that the user named does not exist (or is ambiguous).

    `NotFoundError(what, name, where=, hint=)` says "<where>: no <what> named '<name>' (<hint>).";
    `NotFoundError(message)` is the old form."""

    def __init__(
        self, what_or_message: str, name: str | None = None, where: str = "", hint: str = ""
    ) -> None:
        if name is None:
            super().__init__(what_or_message)
            self.what: str | None = None
        else:
            text = f"no {what_or_message} named '{name}'" + (f" ({hint})" if hint else "")
            super().__init__(_sentence(f"{where}: {text}" if where else text))
            self.what = what_or_message
        self.name = name
        self.where = where
        self.hint = hint


class RemoteError(ReproError):
    """A remote is unreachable, missing, or refuses us.

    `RemoteError(remote, url, problem)` says "remote '<remote>' (<url>): <problem>.";
    `RemoteError(message)` is the old form."""

    def __init__(
        self, remote_or_message: str, url: str | None = None, problem: str | None = None
    ) -> None:
        if problem is None:
            super().__init__(remote_or_message)
            self.remote: str | None = None
        else:
            where = f"remote '{remote_or_message}'" + (f" ({url})" if url else "")
            super().__init__(_sentence(f"{where}: {problem}"))
            self.remote = remote_or_message
        self.url = url
        self.problem = problem


class NewerFormatError(ReproError):
    """A stored record (run record, run-cache entry, snapshot) is in a format newer than this
    repro reads: it is refused rather than misread."""

    def __init__(self, source: str, found: int, supported: int) -> None:
        self.source, self.found, self.supported = source, found, supported
        super().__init__(
            f"{source} was made by a newer repro (format {found}; this one reads up to "
            f"format {supported}); upgrade repro to use it."
        )


class UntrustedInputError(PathError):
    """A record from outside (a remote, a lock from git, a snapshot, a tree) or a workspace
    symlink would make repro read or write outside the project, or names a malformed hash.

    The message is composed from the fields: where the record came from, which field, the value,
    and what is wrong with it."""

    def __init__(self, source: str, field: str, value: object, problem: str) -> None:
        shown = repr(value) if not isinstance(value, str) else repr(value[:200])
        super().__init__(f"{source}: {field} {shown} {problem}; refusing to use it.")
        self.source = source
        self.field = field
        self.value = value
        self.problem = problem
