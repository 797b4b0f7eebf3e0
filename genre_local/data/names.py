"""Dataset names: one rule for every place a name is used.

A dataset name becomes a folder (`reports/NAME`), part of a file name (the tensor cache) and
a value in the store, so it must be safe as a single path component everywhere: no `.` or
`..`, no separators, no leading dot (hidden) or dash (read as a flag), bounded length.
"""

from __future__ import annotations

import re

from genre_local.errors import UserError

DATASET_NAME_MAX_LENGTH = 64
_DATASET_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{DATASET_NAME_MAX_LENGTH - 1}}}")


def is_dataset_name(name: str) -> bool:
    return bool(_DATASET_NAME.fullmatch(name))


def check_dataset_name(name: str, flag: str = "--name") -> str:
    """The name unchanged, or a one-line UserError naming the flag and the rule."""
    if not is_dataset_name(name):
        raise UserError(
            f"{flag} {name!r}: a dataset name must be 1-{DATASET_NAME_MAX_LENGTH} letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (it becomes a folder and file name)"
        )
    return name
