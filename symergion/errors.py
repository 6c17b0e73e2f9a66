"""Error hierarchy: every user-facing error says what went wrong and what to do next."""

from __future__ import annotations


class SymergionError(Exception):
    """Base class of errors a user can act on; the CLI prints them and exits 1."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(SymergionError):
    """The configuration file or an option is invalid."""


class GitError(SymergionError):
    """A git command failed or the repository is not usable."""


class NoteError(SymergionError):
    """A git note cannot be understood as a task spec or feedback."""


class TaskInputError(SymergionError):
    """A task's source or destination cannot be used."""


class ModelError(SymergionError):
    """A model file is missing, unreadable or not a GGUF."""


class LockedError(SymergionError):
    """Another symergion process holds the repository lock."""

    exit_code = 3


class CacheError(SymergionError):
    """The cache directory cannot be used."""


class Cancelled(SymergionError):
    """Work was stopped by a signal before it finished."""

    exit_code = 130
