"""A module logger that imports :mod:`logging` only once a record could be seen (a cold start never needs it).

Debug and info records reach a handler only after something configured logging (a level, a handler, pytest's
capture), and configuring it imports :mod:`logging`; while nothing has, the default WARNING level would drop them,
so they are dropped here without importing it (~5 ms of a cold start). Warnings and errors always go through.
"""

from __future__ import annotations

import sys
from typing import Any

_DEBUG, _INFO, _WARNING, _ERROR = 10, 20, 30, 40  # logging.DEBUG ... logging.ERROR


class LazyLogger:
    """Stands in for ``logging.getLogger(name)``: same calls, same records, ``logging`` imported on first need."""

    __slots__ = ("name", "_logger")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: Any = None

    def _real(self) -> Any:
        """The ``logging.Logger`` this stands for."""
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self.name)
        return self._logger

    def _emit(self, level: int, msg: object, args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
        """Log through the real logger, attributing the record to our caller's caller."""
        if level < _WARNING and "logging" not in sys.modules:
            return  # nothing configured logging, so the default WARNING level would drop this record
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 2
        self._real().log(level, msg, *args, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        """``Logger.debug``."""
        self._emit(_DEBUG, msg, args, kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        """``Logger.info``."""
        self._emit(_INFO, msg, args, kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        """``Logger.warning``."""
        self._emit(_WARNING, msg, args, kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        """``Logger.error``."""
        self._emit(_ERROR, msg, args, kwargs)

    def __getattr__(self, attr: str) -> Any:
        """Anything else (``isEnabledFor``, ``exception``, ``setLevel``...) from the real logger."""
        return getattr(self._real(), attr)


def get_logger(name: str) -> LazyLogger:
    """The lazy logger for module ``name`` (use like ``logging.getLogger(__name__)``)."""
    return LazyLogger(name)
