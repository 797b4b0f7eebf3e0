"""Training curves in the usual trackers, through accelerate's tracker integration (`log_with`).

The trainer logs the per-step loss and the per-epoch dev metrics with `accelerator.log`, which
does nothing when no tracker was started; this module decides which tracker runs, checks that
its package is installed, points MLflow and W&B at their offline, file-based modes, and starts
and finishes one tracker run per seed. Torch-free and import-cheap (the config checks call it).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from recsys.errors import ConfigError

TRACKERS = ("tensorboard", "mlflow", "wandb", "none")
DEFAULT_TRACKER = "tensorboard"  # installed with genre-local; the others are the user's choice
# The package each tracker needs (what the user installs when it is missing).
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def check_tracker_name(name: str) -> str:
    """`name` when it is a known tracker, otherwise ConfigError on the key `track`."""
    if name not in TRACKERS:
        raise ConfigError("track", f"must be one of {', '.join(TRACKERS)}, got {name!r}")
    return name


def require_installed(name: str) -> None:
    """ConfigError (key `track`) naming the package to install when `name`'s tracker is missing."""
    package = TRACKER_PACKAGES.get(check_tracker_name(name))
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(
            "track", f"{name} needs the '{package}' package, which is not installed; install it "
                     f"(pip install {package}) or choose another tracker ({', '.join(TRACKERS)})"
        )


def offline_environment(name: str, folder: Path) -> dict[str, str]:
    """The environment variables that keep `name`'s tracker offline and writing under `folder`:
    MLflow into a file store, W&B in offline mode. Nothing for TensorBoard (always files)."""
    folder = Path(folder).absolute()
    if name == "mlflow":
        return {"MLFLOW_TRACKING_URI": (folder / "mlruns").as_uri()}
    if name == "wandb":
        return {"WANDB_MODE": "offline", "WANDB_DIR": str(folder)}
    return {}


@dataclass(frozen=True)
class Tracking:
    """Which tracker logs a training, and the folder its files go to (one subfolder per run)."""

    tracker: str
    folder: Path

    def __post_init__(self) -> None:
        check_tracker_name(self.tracker)

    @property
    def enabled(self) -> bool:
        return self.tracker != "none"

    def prepare(self) -> None:
        """Before the Accelerator is made: the package is there and the offline mode is set."""
        if not self.enabled:
            return
        require_installed(self.tracker)
        os.environ.update(offline_environment(self.tracker, self.folder))

    def accelerator_options(self) -> dict:
        """Keyword arguments of accelerate.Accelerator that route `accelerator.log` to the tracker."""
        if not self.enabled:
            return {}
        return {"log_with": self.tracker, "project_dir": str(Path(self.folder).absolute())}


def hyperparameters(values: dict) -> dict[str, bool | str | float | int | None]:
    """`values` flattened to what every tracker accepts as a run's configuration (scalars)."""
    flat: dict[str, bool | str | float | int | None] = {}
    for key, value in values.items():
        if isinstance(value, (bool, str, float, int)) or value is None:
            flat[key] = value
        elif isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in hyperparameters(value).items()})
        else:
            flat[key] = str(value)
    return flat


def start_run(accelerator, run_name: str, config: dict) -> None:
    """One tracker run for one seed (no-op when the accelerator has no tracker)."""
    if accelerator.log_with:
        accelerator.init_trackers(run_name, config=hyperparameters(config))


def finish_run(accelerator) -> None:
    """Close the seed's tracker run (files flushed). Not `accelerator.end_training()`: that also
    tears down the process group, which the next seed still needs."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []


__all__ = [
    "DEFAULT_TRACKER", "TRACKERS", "TRACKER_PACKAGES", "Tracking", "check_tracker_name", "finish_run",
    "hyperparameters", "offline_environment", "require_installed", "start_run",
]
