"""The error every part of the runner raises for what it does not implement."""


class UnsupportedError(Exception):
    """The suite uses a key, an assertion or a syntax this runner does not implement.

    The run fails naming it; it never passes silently.
    """
