"""The one exception type users see: a bad input, with what to do about it.

A message names the fix in the caller's own words: ``--overwrite`` on the command line,
``overwrite=True`` from Python (:func:`option`; the CLI runs its commands inside
:func:`command_line`).
"""
import contextlib
import contextvars

_COMMAND_LINE = contextvars.ContextVar("crsae_sort_command_line", default=False)


class InputError(ValueError):
    """A problem with the user's input or parameters; the message says how to fix it."""


def option(api: str, cli: str) -> str:
    """``cli`` (``--overwrite``) inside :func:`command_line`, else ``api`` (``overwrite=True``)."""
    return cli if _COMMAND_LINE.get() else api


@contextlib.contextmanager
def command_line():
    """Messages raised inside name command-line options instead of Python arguments."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)
