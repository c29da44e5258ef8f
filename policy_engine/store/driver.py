"""Recognising the database driver's own errors outside the store (the CLI's last line
of defence maps them to exit 5, a database problem, instead of an internal error)."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError


def is_driver_error(exc: BaseException) -> bool:
    """A SQLAlchemy driver error (connection lost, locked, disk full) that reached the
    caller without the store's wording."""
    return isinstance(exc, DBAPIError)
