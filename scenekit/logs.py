"""Logging for the command line: scenekit's modules log through `logging.getLogger(__name__)`;
`configure_logging` routes those records to stderr once, at the level asked for."""

from __future__ import annotations

import logging
import os

from rich.console import Console
from rich.logging import RichHandler

LOG_ENV = "SCENEKIT_LOG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(verbosity: int = 0) -> None:
    """Send scenekit's log records to stderr through rich, from the more verbose of `-v` given
    `verbosity` times (0: warnings, 1: info, 2: debug) and `$SCENEKIT_LOG` (debug, info, warning, error).
    Calling it again replaces the earlier setup."""
    setting = os.environ.get(LOG_ENV, "").strip()
    level = logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING
    level = min(level, _LEVELS.get(setting.lower(), level))
    logger = logging.getLogger("scenekit")
    for handler in [h for h in logger.handlers if isinstance(h, RichHandler)]:
        logger.removeHandler(handler)
    debugging = level <= logging.DEBUG
    handler = RichHandler(
        console=Console(stderr=True), show_time=debugging, show_path=debugging, markup=False, rich_tracebacks=True
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    if setting and setting.lower() not in _LEVELS:
        logger.warning("%s=%s is not a level (write %s): ignored", LOG_ENV, setting, ", ".join(_LEVELS))
