"""Error types that separate user mistakes (exit 2, one line) from internal failures (exit 1)."""


class UserError(Exception):
    """A mistake the user can fix: bad input file, bad path, bad value.

    The CLI prints ``str(error)`` as a single line on stderr and exits with code 2.
    The message must name the file, line or value at fault and say what to do.
    """

    exit_code = 2


class StoreError(UserError):
    """The DuckDB store cannot be opened (locked by another writer, damaged, wrong version)."""
