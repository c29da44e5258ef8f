"""Logging for the long-running commands: readable lines on a terminal, JSON lines (one
object per line, for log shippers) when asked or when stderr is not a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from policy_engine.errors import ConfigError
from policy_engine.escaping import visible_controls

FORMATS = ("auto", "human", "json")
# LogRecord's own attributes; anything else on a record came in through ``extra=``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_STANDARD |= {"color_message"}  # uvicorn's copy of the message with terminal colours


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and
    any ``extra`` fields; exceptions as text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class HumanLines(logging.Formatter):
    """One readable line per record; control characters in the message (a file named
    with a newline) are escaped, so a name cannot split or forge a line. (JSON lines
    are escaped by json itself.)"""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = visible_controls(record.message)
        return super().formatMessage(record)


def configure(
    log_format: str = "auto",
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    also: tuple[str, ...] = (),
) -> str:
    """Send policy_engine's and APScheduler's logs (and those of the loggers named in
    ``also``, e.g. uvicorn's) to ``stream`` (stderr); returns the format chosen."""
    if log_format not in FORMATS:
        raise ConfigError(f"log_format {log_format!r}: choose one of {' | '.join(FORMATS)}")
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "human" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(
            HumanLines("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    for name in ("policy_engine", "apscheduler", *also):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # APScheduler says "Running job …" / "executed successfully" at INFO on every poll;
    # our own run lines say what happened, so only its warnings and errors are kept.
    logging.getLogger("apscheduler").setLevel(max(level, logging.WARNING))
    return log_format
