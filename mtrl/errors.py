"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class MtrlError(Exception):
    """A mistake the user can fix (bad name, bad value, missing file); never a bug."""


def choices(values) -> str:
    """Format valid choices for an error message, e.g. ``'a', 'b', 'c'``."""
    return ", ".join(repr(v) for v in values)


def did_you_mean(name, values) -> str:
    """``"did you mean 'x'? "`` for the valid value closest to a mistyped ``name``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(v) for v in values], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""
