"""Typed errors: each says what went wrong, where, and what to do about it.

The CLI prints these as one readable line (no traceback); the batch pipeline turns a
MediaError into a failed scan with its ``reason`` and goes on to the next file.
"""

from __future__ import annotations

from pathlib import Path

from policy_engine.escaping import visible_controls


class PolicyEngineError(Exception):
    """Base of every error the engine raises on purpose."""


class MediaError(PolicyEngineError):
    """A file could not be read as a video: zero-byte, truncated, not a video, no video stream."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{visible_controls(self.path)}: {reason}")  # one line, whatever the name


class ModelError(PolicyEngineError):
    """A model could not be found or loaded."""


class ModelNotAvailableError(ModelError):
    """The model is neither a local checkpoint nor in the local Hugging Face cache (offline)."""


class DeviceUnavailableError(PolicyEngineError):
    """An accelerator asked for by name is not present; never silently replaced by the CPU."""


class ConfigError(PolicyEngineError):
    """A setting or a command-line value is invalid."""


class EmptyWindowError(ConfigError, MediaError):
    """The window asked for (--start/--end) holds none of this video. A usage error for
    one video (exit 2); in a batch, that file fails with the reason and the rest go on."""

    def __init__(self, path: str | Path, reason: str) -> None:
        MediaError.__init__(self, path, reason)


class StoreError(PolicyEngineError):
    """The database is unreachable, locked, or its schema does not match this software."""


class WorkerBusyError(StoreError):
    """Another live ingest worker holds the SQLite database (one worker at a time there)."""


# The command line's exit codes (README "Exit codes"): 0 ok; 1 an unexpected error, or
# failed files with --strict; then by the kind of error, the first that matches.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (ConfigError, 2),
    (MediaError, 3),
    (ModelError, 4),
    (DeviceUnavailableError, 4),
    (WorkerBusyError, 6),
    (StoreError, 5),
]


def exit_code(exc: BaseException) -> int:
    """The exit code for an error that stops a command."""
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), 1)
