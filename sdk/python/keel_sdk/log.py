"""Log lines, tagged by the kernel with tenant, plugin and request."""

from wit_world.imports import log as _wit


def debug(message: str) -> None:
    _wit.log(_wit.Level.DEBUG, message)


def info(message: str) -> None:
    _wit.log(_wit.Level.INFO, message)


def warn(message: str) -> None:
    _wit.log(_wit.Level.WARN, message)


def error(message: str) -> None:
    _wit.log(_wit.Level.ERROR, message)
