"""The one exception type users see: a bad input, with what to do about it."""


class InputError(ValueError):
    """A problem with the user's input or parameters; the message says how to fix it."""
