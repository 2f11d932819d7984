"""Errors a user can cause or meet. Each one says what went wrong, where, and what to do."""

from __future__ import annotations


class LakehouseError(Exception):
    """Base class: `str(err)` is the whole message a user sees, `hint` says what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  -> {self.hint}"


class SettingsError(LakehouseError):
    """The env file is missing, unreadable, malformed or holds an invalid value."""


class DownloadError(LakehouseError):
    """A download failed, was cut short, or did not match its published checksum."""


class PreflightError(LakehouseError):
    """A prerequisite for the native stack is missing (see `lakehouse doctor`)."""


class StackError(LakehouseError):
    """A service of the native stack failed to start, to become healthy, or to stop."""
