"""recsys's own exception types: input problems a caller can fix, apart from internal bugs.

The library never names a CLI command or flag; an application that wraps it (genre-local)
maps these to its own error policy (one line on stderr, exit code 2) and adds its hints.
"""

from __future__ import annotations


class RecsysError(Exception):
    """A problem with the caller's input (data, settings, files): the message names the value
    at fault and what to change. One line."""


class ConfigError(RecsysError, ValueError):
    """A training setting out of range. `key` is the setting's name (as in TrainConfig),
    `problem` the message without it, so a wrapper can name its own flag or file instead."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"{key} {problem}")


class CheckpointError(RecsysError):
    """A checkpoint is missing, unfinished, or belongs to other settings or other data."""


class TrainingDiverged(RecsysError):
    """The training loss became NaN or infinite; nothing of the run counts as finished."""
