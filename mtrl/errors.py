"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class MtrlError(Exception):
    """A mistake the user can fix (bad name, bad value, missing file); never a bug."""


def choices(values) -> str:
    """Format valid choices for an error message, e.g. ``'a', 'b', 'c'``."""
    return ", ".join(repr(v) for v in values)
