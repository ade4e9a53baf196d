"""The ``yan`` logger and its console handler.

Training progress and run summaries are ``logging`` records of the ``yan`` logger (module
loggers ``yan.train``, ``yan.tracking``, ... under it), so that an application can route,
filter or silence them. The command line (``yan ...``, ``python -m yan.train``) installs one
handler that prints the message alone on stdout, the console output as it always was;
``--log-level`` sets the level (``debug`` adds detail, ``warning`` keeps only problems).
:func:`yan.train.train` called from Python installs the same handler only when nothing else
handles ``yan`` records, so a notebook still sees its banner and an application configured
with ``logging.basicConfig`` is left alone.
"""

from __future__ import annotations

import logging
import sys

LOG_LEVELS = ("debug", "info", "warning", "error")
LOGGER_NAME = "yan"


class _ConsoleHandler(logging.StreamHandler):
    """Messages as they are, on the ``sys.stdout`` of the moment (a redirected or captured
    stdout, e.g. ``contextlib.redirect_stdout`` or pytest's ``capsys``, gets them)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 - StreamHandler's attribute
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def level_of(name: str) -> int:
    """``--log-level`` as a ``logging`` level, with a clear error for anything else."""
    if str(name).lower() not in LOG_LEVELS:
        raise ValueError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {name!r}")
    return getattr(logging, str(name).upper())


def configure_logging(level: str = "info") -> logging.Logger:
    """The command line's setup: the console handler on the ``yan`` logger (once per process)
    and its level."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level_of(level))
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    return logger


def ensure_logging(level: str = "info") -> logging.Logger:
    """A library call's setup: the level, and the console handler only when no handler would
    receive ``yan`` records (none on it or its ancestors)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level_of(level))
    if not logger.hasHandlers():
        logger.addHandler(_ConsoleHandler())
    return logger


__all__ = ["LOGGER_NAME", "LOG_LEVELS", "configure_logging", "ensure_logging", "level_of"]
