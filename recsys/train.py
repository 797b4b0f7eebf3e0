"""The accelerate training loop: one seed of one model on one encoded dataset variant.

Read `Trainer.run` top to bottom: start (model, optimizer, resume from a checkpoint), then per
epoch `train_epoch` (steps, mid-epoch checkpoints) and `end_epoch` (evaluate on the stopping
split, early stopping, keep the best weights, checkpoint), then `finish` (best weights, final metrics).

The same code runs as a single CPU process and under `accelerate launch` with several
processes; only rank 0 shows progress and (in the caller) writes results. The loop knows
nothing model-specific: it goes through the interface in recsys/models/base.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recsys.catalog import METRICS, unread_settings
from recsys.cpu import use_bf16
from recsys.data import Batch, BatchStream, EncodedDataset, SplitArrays, TrainSamples, epoch_batches
from recsys.errors import CheckpointError, RecsysError, TrainingDiverged
from recsys.evaluate import group_metrics, score_split
from recsys.optim import DECAY_RULE, DECAY_RULE_CHANGED, make_optimizer
from recsys.stopping import plan_splits


# The layout of a model's saved weights; part of every checkpoint's identity, so a checkpoint of an
# older layout is refused with a clear message instead of failing inside load_state_dict.
# 2: word embeddings over the dataset-local vocabulary (recsys/layers/word_embedding.py).
WEIGHTS_FORMAT = 2


@dataclass(frozen=True)
class RunSettings:
    model: str
    seed: int
    epochs: int
    batch_size: int
    eval_batch_size: int
    lr: float
    weight_decay: float
    negatives: int
    patience: int
    history_len: int
    model_config: object  # recsys.models.ModelConfig
    checkpoint_dir: Path | None = None
    resume: bool = False
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0 = at epoch ends only
    num_workers: int = 0
    fast_eval: bool = True
    owner: str = ""  # whose data the checkpoint belongs to (genre-local: the store's id)
    layer_cache_dir: Path | None = None  # PLMNR/DIRE frozen-layer states; None keeps them in memory
    # Share of train impressions held out for early stopping when dev is the reported split
    # (recsys/stopping.py); 0 = train on all of train, no early stopping then.
    holdout_fraction: float = 0.1
    bf16: str = "auto"  # bfloat16 autocast of the training forward (recsys/cpu.py use_bf16)
    optimizer: str = "adam"  # recsys.catalog.OPTIMIZERS: adam (L2 decay, GENRE) | adamw (decoupled)
    decay_scope: str = "weights"  # recsys.catalog.DECAY_SCOPES: which parameters the decay reaches
    # Evaluation-only cohorts: group name -> split -> impression ids, each reported as one more
    # metric group (GENRE Table 7's "Chain" users). Not part of identity(): it changes no weight.
    cohorts: dict[str, dict[str, np.ndarray]] | None = None
    max_steps: int = 0  # steps per epoch at most; 0 = the whole epoch
    report_split: str = "auto"  # recsys.config.REPORT_SPLITS; recsys/stopping.py plan_splits

    def identity(self) -> dict:
        """What must match for --resume to continue a checkpoint (and for predict to use it)."""
        cfg = self.model_config
        identity = {
            "model": self.model, "seed": self.seed, "batch_size": self.batch_size, "lr": self.lr,
            "weight_decay": self.weight_decay, "optimizer": self.optimizer, "negatives": self.negatives,
            "holdout_fraction": self.holdout_fraction,
            "model_config": model_config_identity(cfg, self.model),
            "weights_format": WEIGHTS_FORMAT,
        }
        if self.max_steps:  # only when set: checkpoints of full epochs keep their folder names
            identity["max_steps"] = self.max_steps
        if self.decay_scope != "all":  # checkpoints from before the field decayed every parameter
            identity["decay_scope"] = self.decay_scope
            if self.model in DECAY_RULE_CHANGED:  # other parameter groups than rule 1's checkpoints
                identity["decay_rule"] = DECAY_RULE
        if self.report_split != "auto":  # it changes the stopping split, so the best weights
            identity["report_split"] = self.report_split
        return identity | ({"owner": self.owner} if self.owner else {})

    def settings_key(self) -> str:
        """A short hash of what a checkpoint depends on besides seed and owner (folder names)."""
        shared = {k: v for k, v in self.identity().items() if k not in ("seed", "owner")}
        return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class RunResult:
    seed: int
    eval_split: str
    metrics: dict[str, dict[str, dict[str, float]]]  # split -> group -> metric -> value
    epochs_run: int
    best_epoch: int
    epoch_seconds: list[float]
    train_samples_per_s: list[float]
    data_wait_seconds: list[float]  # per epoch, time the loop waited for its next batch
    dev_auc: list[float]  # per epoch, AUC on the stopping split (dev, or the train hold-out; see stop_split)
    eval_impressions_per_s: float
    processes: int
    stopped_early: bool = False
    interrupted: bool = False
    stop_split: str | None = None  # "dev" | "train-holdout" | None (no early stopping); never eval_split
    autocast: str = "float32"  # "bfloat16" when the forward ran under bf16 autocast (recsys/cpu.py use_bf16)


@dataclass
class LoopState:
    """Trainer bookkeeping saved with every checkpoint (loop.pt beside accelerate's state)."""

    epoch: int = 0  # the epoch in progress (0-based)
    step: int = 0  # steps done in that epoch
    best_auc: float = float("-inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)
    data_wait: list[float] = field(default_factory=list)
    partial_wait: float = 0.0
    dev_auc: list[float] = field(default_factory=list)
    partial_seconds: float = 0.0
    partial_samples: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    # the weights the epoch in progress built its history table from (MatchingModel.start_epoch;
    # PLMNR cached/states), so that a resumed epoch rebuilds the very same table
    table_weights: dict[str, torch.Tensor] | None = None
    done: bool = False

    def state_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in ("best_weights", "table_weights")}
        return {"meta": json.dumps(data), "best_weights": self.best_weights or {},
                "table_weights": self.table_weights or {}}

    def load_state_dict(self, state: dict) -> None:
        for key, value in json.loads(state["meta"]).items():
            setattr(self, key, value)
        self.best_weights = dict(state["best_weights"]) or None
        self.table_weights = dict(state.get("table_weights") or {}) or None  # checkpoints from before it: none

    def finished(self, epochs: int) -> bool:
        """No epoch left to train: early-stopped, or `epochs` epochs done."""
        return self.done or self.epoch >= epochs


def model_config_identity(config, model: str) -> dict | str:
    """ModelConfig as `model`'s checkpoint identity. A field `model` does not read
    (MODEL_SPECIFIC_FIELDS; interest_fusion without a profile) stands at its default, so it changes
    no folder, and runs at the defaults keep the identity they had before this rule. plmnr_history
    appears only when not "exact": checkpoints written before the field existed keep matching."""
    if not hasattr(config, "__dataclass_fields__"):
        return repr(config)
    fields = asdict(config)
    defaults = {f.name: f.default for f in dataclass_fields(config)}
    for name in unread_settings(model, profile=fields.get("use_profile", True)):
        if name in fields:
            fields[name] = defaults[name]
    if fields.get("plmnr_history") == "exact":
        del fields["plmnr_history"]
    return fields


class TrainStep(nn.Module):
    """Loss of one batch; wrapping the model lets DDP see a real forward() call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        model = self.model
        vectors = model.encode_step_news(batch.news, batch.candidates)
        history = vectors[batch.history]
        if model.kind == "matching":
            user = model.encode_user(history, batch.user)
            logits = model.score(user, vectors[batch.candidates])
            return nn.functional.cross_entropy(logits, batch.targets)
        logits = model.score(history, batch.user, vectors[batch.candidates[:, 0]])
        return nn.functional.binary_cross_entropy_with_logits(logits, batch.targets)


def feature_sizes(data: EncodedDataset):
    from recsys.models import FeatureSizes

    return FeatureSizes(
        vocab_size=data.vocab_size,
        num_categories=data.num_categories,
        num_subcategories=data.num_subcategories,
        num_users=data.num_users,
        num_topics=len(data.vocabulary.topics) + 1,
        num_regions=len(data.vocabulary.regions) + 1,
        word_ids=tuple(int(i) for i in data.word_ids),
    )


def evaluate(accelerator, model, data: EncodedDataset, split_name: str, settings: RunSettings,
             arrays: SplitArrays | None = None):
    """Metrics of one split (`arrays`, or the dataset's split `split_name`); with several
    processes each scores a shard and all gather."""
    from accelerate.utils import gather_object

    split = data.split(split_name) if arrays is None else arrays
    rows = np.arange(len(split), dtype=np.int64)[accelerator.process_index :: accelerator.num_processes]
    scored = score_split(model, data, split, settings.history_len, settings.eval_batch_size,
                         rows=rows, fast=settings.fast_eval, device=accelerator.device)
    if accelerator.num_processes > 1:
        pairs = gather_object(list(zip(scored.rows.tolist(), scored.scores, strict=True)))
        pairs.sort(key=lambda p: p[0])
        scored.rows = np.asarray([p[0] for p in pairs], dtype=np.int64)
        scored.scores = [p[1] for p in pairs]
    # Cohorts are impression ids of the dataset's own splits; a train hold-out (arrays) has none.
    cohorts = {name: ids[split_name] for name, ids in (settings.cohorts or {}).items()
               if arrays is None and split_name in ids}
    return group_metrics(split, scored, cohorts), scored.impressions_per_s * accelerator.num_processes


class _CtrlC:
    """The first Ctrl-C only raises a flag the loop reads after the current step (so the
    checkpoint it then writes is exact); a second one stops at once. Single process only: under
    a distributed launch the launcher owns signals."""

    def __init__(self, enabled: bool):
        self.raised = False
        self.previous = None
        if enabled and threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


# -- checkpoints ---------------------------------------------------------------------------------


def find_checkpoint(checkpoint_dir: Path | None) -> Path | None:
    """The newest complete checkpoint in a run's folder: `latest`, or `previous` when a kill
    landed between the two renames of a save."""
    if checkpoint_dir is None:
        return None
    for name in ("latest", "previous"):
        folder = Path(checkpoint_dir) / name
        if (folder / "run.json").exists():
            return folder
    return None


def read_loop_state(checkpoint: Path) -> LoopState:
    """The loop bookkeeping (progress, best weights) of a complete checkpoint folder."""
    state = LoopState()
    state.load_state_dict(torch.load(Path(checkpoint) / "loop.pt", weights_only=True))
    return state


def check_checkpoint(checkpoint: Path, settings: RunSettings, data_fingerprint: str) -> None:
    """CheckpointError unless `checkpoint` was written by a run with these settings on these rows."""
    saved = json.loads((Path(checkpoint) / "run.json").read_text())
    saved_data = saved.pop("data", None)
    if saved.get("owner", "") != settings.owner:
        raise CheckpointError(
            f"checkpoint {checkpoint} belongs to other data (owner {saved.get('owner') or 'none'}, "
            f"not {settings.owner or 'none'}); use its own store or another checkpoint folder"
        )
    if saved != json.loads(json.dumps(settings.identity(), sort_keys=True)):
        raise CheckpointError(
            f"checkpoint {checkpoint} was written with other settings; "
            "use the same settings or another checkpoint folder"
        )
    if saved_data != data_fingerprint:
        raise CheckpointError(
            f"the rows for this variant changed since checkpoint {checkpoint} was written "
            "(new generations or a re-import); train again without resuming"
        )


def _save(accelerator, settings: RunSettings, state: LoopState, data_fingerprint: str) -> None:
    """Model, optimizer and RNG states (accelerate) plus the loop's own bookkeeping.

    Written to a fresh folder and swapped in by renames (run.json last), so a kill at any moment
    leaves a complete checkpoint behind."""
    if settings.checkpoint_dir is None:
        return
    path = Path(settings.checkpoint_dir) / "latest"
    staging, previous = path.with_name("staging"), path.with_name("previous")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(state.state_dict(), staging / "loop.pt")
        (staging / "run.json").write_text(json.dumps(settings.identity() | {"data": data_fingerprint}, sort_keys=True))
        if path.exists():
            if previous.exists():
                shutil.rmtree(previous)
            path.rename(previous)
        staging.rename(path)
        if previous.exists():
            shutil.rmtree(previous)
    accelerator.wait_for_everyone()


# -- the loop ------------------------------------------------------------------------------------


class Trainer:
    """One seed's training. `run()` is the whole of it; the methods are its steps in order.

    `pause_requested` is the one hook: a subclass (the tests) returns True to stop after a
    step as a kill would, with the checkpoint written; Ctrl-C does the same and then raises."""

    def __init__(self, accelerator, data: EncodedDataset, settings: RunSettings, progress=None):
        self.accelerator, self.data, self.settings, self.progress = accelerator, data, settings, progress
        self.state = LoopState()
        self.steps_taken = 0  # in this process's life, not counting resumed steps

    # -- hook ----------------------------------------------------------------------------------
    def pause_requested(self) -> bool:
        """Stop after the current step, as if killed (the checkpoint is written first)."""
        return False

    # -- top level -----------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Train with early stopping on the stopping split's AUC, then evaluate the best epoch's weights."""
        self.start()
        settings = self.settings
        self.ctrl_c = _CtrlC(enabled=self.accelerator.num_processes == 1 and settings.checkpoint_dir is not None)
        try:
            while not self.state.finished(settings.epochs):
                if not self.train_epoch():
                    return self.paused()
                self.end_epoch()
                self.track_epoch()
                if self.ctrl_c.raised or (not self.state.finished(settings.epochs) and self.pause_requested()):
                    return self.paused()
        finally:
            self.ctrl_c.restore()
        return self.finish()

    def start(self) -> None:
        """Model and optimizer from the seed, the checkpoint's state when resuming, the samples."""
        from accelerate.utils import set_seed

        from recsys.models import build_model

        accelerator, data, settings = self.accelerator, self.data, self.settings
        accelerator.free_memory()  # forget the previous seed's model and optimizer
        set_seed(settings.seed)
        model = build_model(settings.model, settings.model_config, feature_sizes(data))
        # PLMNR/DIRE compute their frozen lower layers' states for the whole catalogue once here;
        # on disk, the main process writes the cache while the other ranks wait, then open it
        with accelerator.main_process_first():
            model.prepare_news(data.news, settings.layer_cache_dir)
        optimizer = make_optimizer(model, settings.lr, settings.weight_decay, settings.optimizer,
                                   settings.decay_scope)
        self.step_module, self.optimizer = accelerator.prepare(TrainStep(model), optimizer)
        if settings.resume:
            checkpoint = find_checkpoint(settings.checkpoint_dir)
            if checkpoint is None:
                raise CheckpointError(f"no checkpoint to resume in {settings.checkpoint_dir}; train without resuming first")
            check_checkpoint(checkpoint, settings, data.fingerprint)
            accelerator.load_state(str(checkpoint))
            self.state = read_loop_state(checkpoint)
        if "train" not in data.splits:
            raise RecsysError(f"dataset '{data.dataset}' has no train split")
        # Which split stops and which is reported, never the same one; fail before training.
        self.plan = plan_splits(data, settings.holdout_fraction, settings.report_split)
        self.eval_name = self.plan.report_split
        self.samples = TrainSamples(data, self.plan.train, model.kind, settings.negatives, settings.history_len)
        if len(self.samples) == 0:
            raise RecsysError(f"dataset '{data.dataset}' has no clicked training impressions")
        # The last epoch's metrics (all users) on the stopping split, and its name, for the trackers.
        self.epoch_dev: dict[str, float] = {}
        self.epoch_split = "dev"
        self.bf16 = use_bf16(settings.bf16, accelerator.device.type, model=settings.model)

    def train_epoch(self) -> bool:
        """The rest of the current epoch; False when paused mid-epoch (checkpoint written)."""
        accelerator, settings, state = self.accelerator, self.settings, self.state
        batches = epoch_batches(len(self.samples), settings.batch_size, settings.seed, state.epoch,
                                accelerator.process_index, accelerator.num_processes)
        if settings.max_steps:
            batches = batches[: settings.max_steps]
        loader = torch.utils.data.DataLoader(
            BatchStream(self.samples, batches, settings.seed, state.epoch, start_step=state.step),
            batch_size=None, num_workers=settings.num_workers,
            persistent_workers=False, prefetch_factor=4 if settings.num_workers else None,
            # its own generator: creating the loader must not draw from the global RNG, or a
            # resumed run's dropout masks would drift from the uninterrupted run's
            generator=torch.Generator().manual_seed(settings.seed),
        )
        self.step_module.train()
        # PLMNR with plmnr_history "cached"/"states" rebuilds its history table from the current
        # weights; a resumed epoch from the weights its table had (saved with the checkpoint), not
        # the checkpoint's, so that it goes on exactly as the uninterrupted run
        resumed_table = state.table_weights if state.step > 0 else None
        state.table_weights = accelerator.unwrap_model(self.step_module).model.start_epoch(resumed_table)
        self.steps_per_epoch = len(batches)
        self.task = None
        if self.progress is not None and accelerator.is_main_process:
            self.task = self.progress.add_task(
                f"seed {settings.seed} epoch {state.epoch + 1}/{settings.epochs}", total=len(batches),
                completed=state.step, loss=float("nan"), rate=0.0)
        # Time and samples of a resumed epoch continue from the checkpoint's partial counts.
        self.started = time.perf_counter() - state.partial_seconds
        self.seen, self.waited = state.partial_samples, state.partial_wait
        fetched_at = time.perf_counter()
        for batch in loader:
            self.waited += time.perf_counter() - fetched_at
            self.train_step(batch)
            mid_epoch = state.step < len(batches)
            if mid_epoch and settings.checkpoint_every and state.step % settings.checkpoint_every == 0:
                self.save_partial()
            if mid_epoch and self._pause_now():
                self.save_partial()
                return False
            fetched_at = time.perf_counter()
        seconds = time.perf_counter() - self.started
        state.epoch_seconds.append(seconds)
        state.samples_per_s.append(self.seen / max(seconds, 1e-9))
        state.data_wait.append(self.waited)
        state.partial_seconds, state.partial_samples, state.partial_wait = 0.0, 0, 0.0
        return True

    def train_step(self, batch: Batch) -> None:
        accelerator, state = self.accelerator, self.state
        batch = batch.to(accelerator.device)
        # the forward only: autocast keeps the loss, the weights and the optimizer in float32
        with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.step_module(batch)
        if not self._finite_everywhere(loss):
            # Stop before the step poisons the weights; the last checkpoint stays as it was.
            raise TrainingDiverged(
                f"seed {self.settings.seed}: the training loss became {float(loss.detach())} at epoch "
                f"{state.epoch + 1} step {state.step + 1}; lower lr (now {self.settings.lr}) and train again"
            )
        self.optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        self.optimizer.step()
        state.step += 1
        self.steps_taken += 1
        self.seen += len(batch) * accelerator.num_processes
        self.track_step(loss)
        if self.task is not None:
            elapsed = time.perf_counter() - self.started
            self.progress.update(self.task, advance=1, loss=float(loss.detach()), rate=self.seen / max(elapsed, 1e-9))

    def _finite_everywhere(self, loss: torch.Tensor) -> bool:
        """Whether every process's loss is finite (all ranks must agree to stop, or the others
        would wait in the gradient all-reduce forever)."""
        finite = torch.isfinite(loss.detach()).all().reshape(1).to(torch.int32)
        if self.accelerator.num_processes > 1:
            finite = self.accelerator.gather(finite)
        return bool(finite.all())

    def end_epoch(self) -> None:
        """Stopping-split AUC, early stopping and the best weights so far; then an epoch-end checkpoint."""
        settings, state, plan = self.settings, self.state, self.plan
        epoch_done = state.epoch + 1
        unwrapped = self.accelerator.unwrap_model(self.step_module).model
        if plan.stopping is not None:
            stop, _ = evaluate(self.accelerator, unwrapped, self.data, plan.stop_split, settings, plan.stopping)
            auc = stop["all"]["auc"]
            self.epoch_dev, self.epoch_split = stop["all"], plan.stop_split
            state.dev_auc.append(auc)
            if self.task is not None:
                self.progress.update(self.task, description=f"seed {settings.seed} epoch {epoch_done}/{settings.epochs} {plan.stop_split} auc {auc:.4f}")
            if auc > state.best_auc or state.best_weights is None:
                state.best_auc, state.best_epoch, state.bad_epochs = auc, epoch_done, 0
                state.best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in unwrapped.state_dict().items()})
            else:
                state.bad_epochs += 1
                state.done = state.bad_epochs >= settings.patience
        else:
            state.best_epoch = epoch_done
            state.best_weights = {k: v.detach().cpu().clone() for k, v in unwrapped.state_dict().items()}
        state.epoch, state.step = epoch_done, 0
        _save(self.accelerator, settings, state, self.data.fingerprint)

    # -- tracker hook (recsys/tracking.py): accelerate's trackers, when the caller started one -----
    def track_step(self, loss: torch.Tensor) -> None:
        """The step's loss, at the step's number counted over all epochs."""
        if self.accelerator.trackers:
            step = self.state.epoch * self.steps_per_epoch + self.state.step
            self.accelerator.log({"train/loss": float(loss.detach())}, step=step)

    def track_epoch(self) -> None:
        """The finished epoch's metrics on the stopping split (all users; logged under that split's
        name, e.g. dev/auc), throughput and time, at the epoch's number."""
        if not self.accelerator.trackers:
            return
        state = self.state
        values = {f"{self.epoch_split}/{metric}": float(self.epoch_dev[metric]) for metric in METRICS if metric in self.epoch_dev}
        values |= {"epoch/samples_per_s": state.samples_per_s[-1], "epoch/seconds": state.epoch_seconds[-1]}
        self.accelerator.log(values, step=state.epoch)
        self.epoch_dev = {}

    def save_partial(self) -> None:
        """A mid-epoch checkpoint, with the epoch's time and samples so far."""
        self.state.partial_seconds = time.perf_counter() - self.started
        self.state.partial_samples, self.state.partial_wait = self.seen, self.waited
        _save(self.accelerator, self.settings, self.state, self.data.fingerprint)

    def finish(self) -> RunResult:
        """The best epoch's weights scored on dev and on the reported split."""
        unwrapped = self.accelerator.unwrap_model(self.step_module).model
        if self.state.best_weights is not None:
            unwrapped.load_state_dict(self.state.best_weights)
        metrics: dict[str, dict[str, dict[str, float]]] = {}
        eval_rate = 0.0
        for split_name in dict.fromkeys(["dev", self.eval_name]):
            if split_name in self.data.splits and self.data.splits[split_name].labeled:
                metrics[split_name], rate = evaluate(self.accelerator, unwrapped, self.data, split_name, self.settings)
                if split_name == self.eval_name:
                    eval_rate = rate
        self.accelerator.free_memory()
        return self._result(metrics, eval_rate, interrupted=False)

    def paused(self) -> RunResult:
        """A run stopped before its end (checkpoint written): no metrics; Ctrl-C raises."""
        if self.ctrl_c.raised:
            raise KeyboardInterrupt
        self.accelerator.free_memory()
        return self._result({}, 0.0, interrupted=True)

    def _pause_now(self) -> bool:
        return self.ctrl_c.raised or self.pause_requested()

    def _result(self, metrics, eval_rate: float, interrupted: bool) -> RunResult:
        state = self.state
        return RunResult(
            seed=self.settings.seed, eval_split=self.eval_name, metrics=metrics, epochs_run=len(state.epoch_seconds),
            best_epoch=state.best_epoch, epoch_seconds=list(state.epoch_seconds),
            train_samples_per_s=list(state.samples_per_s), data_wait_seconds=list(state.data_wait),
            dev_auc=list(state.dev_auc), eval_impressions_per_s=eval_rate,
            processes=self.accelerator.num_processes, stopped_early=state.done, interrupted=interrupted,
            stop_split=self.plan.stop_split, autocast="bfloat16" if self.bf16 else "float32",
        )


def run_training(accelerator, data: EncodedDataset, settings: RunSettings, progress=None) -> RunResult:
    """One seed: train with early stopping on the stopping split's AUC (recsys/stopping.py), then
    evaluate the best epoch's weights on dev and the reported split."""
    return Trainer(accelerator, data, settings, progress).run()


# -- process set-up ------------------------------------------------------------------------------


def make_accelerator(cpu: bool = False, tracking=None):
    """The Accelerator of a training; `tracking` (a recsys.tracking.Tracking) routes
    `accelerator.log` to its tracker (prepared first: package checked, offline mode set)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # accelerate only forms a multi-process CPU group (gloo) when told cpu=True; without a GPU,
    # a launch with WORLD_SIZE > 1 (accelerate launch / torchrun) would otherwise run N
    # independent single-process trainings.
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cpu = True
    # Some models leave parameters unused for a given feature set (e.g. no abstract view).
    options = {}
    if tracking is not None:
        tracking.prepare()
        options = tracking.accelerator_options()
    return Accelerator(cpu=cpu, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)], **options)


def set_threads(threads: int, accelerator) -> None:
    """`threads` torch CPU threads; 0 picks them (recsys/cpu.py auto_threads): a fair share of the
    cores among this machine's processes of the run, fewer when other work keeps the cores busy."""
    from recsys.cpu import auto_threads, machine_load

    if threads > 0:
        torch.set_num_threads(threads)
    elif accelerator.device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
        torch.set_num_threads(auto_threads(os.cpu_count() or 1, machine_load(), local))


__all__ = [
    "LoopState", "RunResult", "RunSettings", "TrainStep", "Trainer", "check_checkpoint",
    "evaluate", "feature_sizes", "find_checkpoint", "make_accelerator", "make_optimizer", "read_loop_state",
    "run_training", "set_threads",
]
