"""Which split stops training early and which split is reported: never the same one.

MIND-small and MIND-large have no labelled test split. Reporting on dev after early-stopping on
dev would pick the epoch that looks best on the very numbers reported. So:

- test labelled (synthetic data, a labelled local test): report test, stop on dev, as before
  (no early stopping when there is no labelled dev either: the last epoch's weights count);
- otherwise, or when the run asks for dev (report_split = "dev"): report dev and stop on a
  held-out slice of the train impressions ("train-holdout"), which is then left out of training. `holdout_fraction` 0 trains on all of train, without
  early stopping.

The slice rule: an impression is held out when a fixed 64-bit mix (splitmix64's finaliser) of its
impression id, mod 10_000, falls below `holdout_fraction * 10_000`. Why a hash of the id and not
"the last 10% by time": it depends on nothing but the id, so the slice is the same in every run,
process and machine, for every variant of the dataset (variants never change impressions), and
does not hinge on timestamp ties (the synthetic generator and many fixtures share one time per
day); and it spreads over all train days and users, so the stopping AUC is not one day's AUC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data import EncodedDataset, SplitArrays
from recsys.errors import RecsysError

HOLDOUT_SPLIT = "train-holdout"
_BUCKETS = 10_000


@dataclass(frozen=True)
class SplitPlan:
    """The split each role uses in one run; `stop_split` None = no early stopping."""

    report_split: str  # "test" | "dev"
    stop_split: str | None  # "dev" | "train-holdout" | None
    train: SplitArrays  # what the model trains on (train minus the held-out slice)
    stopping: SplitArrays | None  # what early stopping scores at each epoch end


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over uint64: a fixed, well-spread function of each value."""
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def holdout_mask(impression_ids: np.ndarray, fraction: float) -> np.ndarray:
    """True for the impressions in the held-out slice (see the module docstring for the rule)."""
    ids = np.asarray(impression_ids, dtype=np.int64).view(np.uint64)
    threshold = int(round(fraction * _BUCKETS))
    return (_mix64(ids) % np.uint64(_BUCKETS)) < np.uint64(threshold)


def take_rows(split: SplitArrays, rows: np.ndarray) -> SplitArrays:
    """The impressions `rows` (ascending) of `split` as a split of their own."""
    rows = np.asarray(rows, dtype=np.int64)

    def gather(flat: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths = offsets[rows + 1] - offsets[rows]
        new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        starts = np.repeat(offsets[rows] - new_offsets[:-1], lengths)
        return flat[starts + np.arange(int(new_offsets[-1]))], new_offsets

    history, history_offsets = gather(split.history, split.history_offsets)
    candidates, candidate_offsets = gather(split.candidates, split.candidate_offsets)
    labels, _ = gather(split.labels, split.candidate_offsets)
    return SplitArrays(
        impression_id=split.impression_id[rows], user_index=split.user_index[rows],
        profile_index=split.profile_index[rows], history=history, history_offsets=history_offsets,
        original_history_len=split.original_history_len[rows], candidates=candidates,
        candidate_offsets=candidate_offsets, labels=labels,
    )


def _labeled(data: EncodedDataset, name: str) -> bool:
    return name in data.splits and data.splits[name].labeled


def plan_splits(data: EncodedDataset, holdout_fraction: float, report: str = "auto") -> SplitPlan:
    """Report and stopping splits of `data`, and the train rows left to train on. `report` "dev"
    plans as if test were unlabelled (test is then never scored); "test" requires a labelled test."""
    if "train" not in data.splits:
        raise RecsysError(f"dataset '{data.dataset}' has no train split")
    train = data.split("train")
    if report == "test" and not _labeled(data, "test"):
        raise RecsysError(f"dataset '{data.dataset}' has no labeled test split to report; "
                          "set report_split to auto or dev")
    if report != "dev" and _labeled(data, "test"):
        dev = data.split("dev") if _labeled(data, "dev") else None
        return SplitPlan("test", None if dev is None else "dev", train, dev)
    if not _labeled(data, "dev"):
        raise RecsysError(f"dataset '{data.dataset}' has no labeled dev or test split to evaluate on")
    if holdout_fraction <= 0:
        return SplitPlan("dev", None, train, None)
    held = holdout_mask(train.impression_id, holdout_fraction)
    if not held.any() or held.all():
        raise RecsysError(
            f"dataset '{data.dataset}': holding out {holdout_fraction:g} of its {len(train)} train impressions "
            f"for early stopping leaves {'nothing to hold out' if not held.any() else 'nothing to train on'}; "
            "change holdout_fraction (0 turns early stopping off)"
        )
    return SplitPlan("dev", HOLDOUT_SPLIT, take_rows(train, np.flatnonzero(~held)), take_rows(train, np.flatnonzero(held)))
