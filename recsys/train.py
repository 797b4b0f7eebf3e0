"""The accelerate training loop: one seed of one model on one encoded dataset variant.

The same code runs as a single CPU process and under `accelerate launch` with several
processes; only rank 0 logs, shows progress and (in the caller) writes to the store. The loop
knows nothing model-specific: it goes through the interface in recsys/models/base.py.
"""

from __future__ import annotations

import copy
import json
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genre_local.data.taxonomy import PROFILE_TOPICS, US_STATES
from genre_local.errors import UserError
from recsys.data import Batch, BatchStream, EncodedDataset, TrainSamples, epoch_batches
from recsys.evaluate import group_metrics, score_split


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
    stop_after_steps: int | None = None  # stop (checkpoint kept) after this many steps: a simulated kill
    layer_cache_dir: Path | None = None  # PLMNR/DIRE frozen-layer states; None keeps them in memory

    def identity(self) -> dict:
        """What must match for --resume to continue a checkpoint."""
        cfg = self.model_config
        return {
            "model": self.model, "seed": self.seed, "batch_size": self.batch_size, "lr": self.lr,
            "weight_decay": self.weight_decay, "negatives": self.negatives,
            "model_config": asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else repr(cfg),
        }


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
    dev_auc: list[float]
    eval_impressions_per_s: float
    processes: int
    stopped_early: bool = False
    interrupted: bool = False


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
    done: bool = False

    def state_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "best_weights"}
        return {"meta": json.dumps(data), "best_weights": self.best_weights or {}}

    def load_state_dict(self, state: dict) -> None:
        for key, value in json.loads(state["meta"]).items():
            setattr(self, key, value)
        self.best_weights = dict(state["best_weights"]) or None


class TrainStep(nn.Module):
    """Loss of one batch; wrapping the model lets DDP see a real forward() call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        model = self.model
        vectors = model.encode_news(batch.news)
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
        num_topics=len(PROFILE_TOPICS) + 1,
        num_regions=len(US_STATES) + 1,
    )


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (GENRE: Adam with weight decay) over the trainable parameters only (PLMNR's frozen
    MiniLM stays out). The fused kernel is ~10x faster on CPU for the large word embedding."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def eval_split_name(data: EncodedDataset) -> str:
    """Report test when it has labels, otherwise dev (MIND's test labels are withheld)."""
    if "test" in data.splits and data.splits["test"].labeled:
        return "test"
    if "dev" in data.splits and data.splits["dev"].labeled:
        return "dev"
    raise UserError(f"dataset '{data.dataset}' has no labeled dev or test split to evaluate on")


def evaluate(accelerator, model, data: EncodedDataset, split_name: str, settings: RunSettings):
    """Metrics of one split; with several processes each scores a shard and all gather."""
    from accelerate.utils import gather_object

    split = data.split(split_name)
    rows = np.arange(len(split), dtype=np.int64)[accelerator.process_index :: accelerator.num_processes]
    scored = score_split(model, data, split, settings.history_len, settings.eval_batch_size,
                         rows=rows, fast=settings.fast_eval, device=accelerator.device)
    if accelerator.num_processes > 1:
        pairs = gather_object(list(zip(scored.rows.tolist(), scored.scores, strict=True)))
        pairs.sort(key=lambda p: p[0])
        scored.rows = np.asarray([p[0] for p in pairs], dtype=np.int64)
        scored.scores = [p[1] for p in pairs]
    return group_metrics(split, scored), scored.impressions_per_s * accelerator.num_processes


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


def _checkpoint_path(settings: RunSettings) -> Path | None:
    return None if settings.checkpoint_dir is None else Path(settings.checkpoint_dir) / "latest"


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


def _save(accelerator, settings: RunSettings, state: LoopState, data_fingerprint: str) -> None:
    """Model, optimizer and RNG states (accelerate) plus the loop's own bookkeeping.

    Written to a fresh folder and swapped in by renames (run.json last), so a kill at any moment
    leaves a complete checkpoint behind."""
    path = _checkpoint_path(settings)
    if path is None:
        return
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


def run_training(
    accelerator,
    data: EncodedDataset,
    settings: RunSettings,
    model_factory: Callable[[], nn.Module] | None = None,
    progress=None,
) -> RunResult:
    """Train with early stopping on dev AUC, then evaluate the best epoch's weights."""
    from accelerate.utils import set_seed

    accelerator.free_memory()  # forget the previous seed's model and optimizer
    set_seed(settings.seed)
    if model_factory is None:
        from recsys.models import build_model

        model = build_model(settings.model, settings.model_config, feature_sizes(data))
    else:
        model = model_factory()
    # PLMNR/DIRE compute their frozen lower layers' states for the whole catalogue once here
    model.prepare_news(data.news, settings.layer_cache_dir)
    optimizer = make_optimizer(model, settings.lr, settings.weight_decay)
    step_module, optimizer = accelerator.prepare(TrainStep(model), optimizer)
    state = LoopState()

    checkpoint = find_checkpoint(settings.checkpoint_dir)
    if settings.resume:
        if checkpoint is None:
            raise UserError(f"--resume: no checkpoint in {settings.checkpoint_dir}; train without --resume first")
        saved = json.loads((checkpoint / "run.json").read_text())
        saved_data = saved.pop("data", None)
        if saved != json.loads(json.dumps(settings.identity(), sort_keys=True)):
            raise UserError(
                f"--resume: checkpoint {checkpoint} was written with other settings; "
                "use the same flags or another --checkpoint-dir"
            )
        if saved_data != data.fingerprint:
            raise UserError(
                f"--resume: the store's rows for this variant changed since checkpoint {checkpoint} "
                "(new generations or a re-import); train again without --resume"
            )
        accelerator.load_state(str(checkpoint))
        state.load_state_dict(torch.load(checkpoint / "loop.pt", weights_only=True))

    if "train" not in data.splits:
        raise UserError(f"dataset '{data.dataset}' has no train split")
    eval_name = eval_split_name(data)  # fail before training, not after it
    samples = TrainSamples(data, data.split("train"), model.kind, settings.negatives, settings.history_len)
    if len(samples) == 0:
        raise UserError(f"dataset '{data.dataset}' has no clicked training impressions")
    has_dev = "dev" in data.splits and data.splits["dev"].labeled
    steps_taken = 0
    interrupted = False
    ctrl_c = _CtrlC(enabled=accelerator.num_processes == 1 and settings.checkpoint_dir is not None)

    try:
        while not state.done and state.epoch < settings.epochs:
            batches = epoch_batches(len(samples), settings.batch_size, settings.seed, state.epoch,
                                    accelerator.process_index, accelerator.num_processes)
            stream = BatchStream(samples, batches, settings.seed, state.epoch, start_step=state.step)
            loader = torch.utils.data.DataLoader(
                stream, batch_size=None, num_workers=settings.num_workers,
                persistent_workers=False, prefetch_factor=4 if settings.num_workers else None,
                # its own generator: creating the loader must not draw from the global RNG, or a
                # resumed run's dropout masks would drift from the uninterrupted run's
                generator=torch.Generator().manual_seed(settings.seed),
            )
            step_module.train()
            task = None
            if progress is not None and accelerator.is_main_process:
                task = progress.add_task(f"seed {settings.seed} epoch {state.epoch + 1}/{settings.epochs}", total=len(batches),
                                         completed=state.step, loss=float("nan"), rate=0.0)
            started = time.perf_counter() - state.partial_seconds
            seen = state.partial_samples
            waited = state.partial_wait
            fetched_at = time.perf_counter()
            for batch in loader:
                waited += time.perf_counter() - fetched_at
                batch = batch.to(accelerator.device)
                loss = step_module(batch)
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                optimizer.step()
                state.step += 1
                steps_taken += 1
                seen += len(batch) * accelerator.num_processes
                if task is not None:
                    elapsed = time.perf_counter() - started
                    progress.update(task, advance=1, loss=float(loss.detach()), rate=seen / max(elapsed, 1e-9))
                mid_save = settings.checkpoint_every and state.step % settings.checkpoint_every == 0
                stop_now = settings.stop_after_steps is not None and steps_taken >= settings.stop_after_steps
                if (mid_save or stop_now) and state.step < len(batches):
                    state.partial_seconds = time.perf_counter() - started
                    state.partial_samples = seen
                    state.partial_wait = waited
                    _save(accelerator, settings, state, data.fingerprint)
                if stop_now and state.step < len(batches):
                    interrupted = True
                    break
                if ctrl_c.raised and state.step < len(batches):
                    # Ctrl-C lands between steps: save exactly here so --resume loses nothing
                    state.partial_seconds = time.perf_counter() - started
                    state.partial_samples = seen
                    state.partial_wait = waited
                    _save(accelerator, settings, state, data.fingerprint)
                    raise KeyboardInterrupt
                fetched_at = time.perf_counter()
            if interrupted:
                break
            seconds = time.perf_counter() - started
            state.epoch_seconds.append(seconds)
            state.samples_per_s.append(seen / max(seconds, 1e-9))
            state.data_wait.append(waited)
            state.partial_wait = 0.0
            state.partial_seconds, state.partial_samples = 0.0, 0
            epoch_done = state.epoch + 1
            unwrapped = accelerator.unwrap_model(step_module).model
            if has_dev:
                dev, _ = evaluate(accelerator, unwrapped, data, "dev", settings)
                auc = dev["all"]["auc"]
                state.dev_auc.append(auc)
                if task is not None:
                    progress.update(task, description=f"seed {settings.seed} epoch {epoch_done}/{settings.epochs} dev auc {auc:.4f}")
                if auc > state.best_auc or state.best_weights is None:
                    state.best_auc, state.best_epoch, state.bad_epochs = auc, epoch_done, 0
                    state.best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in unwrapped.state_dict().items()})
                else:
                    state.bad_epochs += 1
                    if state.bad_epochs >= settings.patience:
                        state.done = True
            else:
                state.best_epoch = epoch_done
                state.best_weights = {k: v.detach().cpu().clone() for k, v in unwrapped.state_dict().items()}
            state.epoch, state.step = epoch_done, 0
            _save(accelerator, settings, state, data.fingerprint)
            if ctrl_c.raised:
                raise KeyboardInterrupt
            if settings.stop_after_steps is not None and steps_taken >= settings.stop_after_steps \
                    and state.epoch < settings.epochs and not state.done:
                interrupted = True
                break

    finally:
        ctrl_c.restore()
    unwrapped = accelerator.unwrap_model(step_module).model
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    eval_rate = 0.0
    if not interrupted:
        if state.best_weights is not None:
            unwrapped.load_state_dict(state.best_weights)
        for split_name in dict.fromkeys(["dev", eval_name]):
            if split_name in data.splits and data.splits[split_name].labeled:
                metrics[split_name], rate = evaluate(accelerator, unwrapped, data, split_name, settings)
                if split_name == eval_name:
                    eval_rate = rate
    accelerator.free_memory()
    return RunResult(
        seed=settings.seed, eval_split=eval_name, metrics=metrics, epochs_run=len(state.epoch_seconds),
        best_epoch=state.best_epoch, epoch_seconds=list(state.epoch_seconds),
        train_samples_per_s=list(state.samples_per_s), data_wait_seconds=list(state.data_wait),
        dev_auc=list(state.dev_auc),
        eval_impressions_per_s=eval_rate, processes=accelerator.num_processes,
        stopped_early=state.done, interrupted=interrupted,
    )


def make_accelerator(cpu: bool = False):
    import os

    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # accelerate only forms a multi-process CPU group (gloo) when told cpu=True; without a GPU,
    # a launch with WORLD_SIZE > 1 (accelerate launch / torchrun) would otherwise run N
    # independent single-process trainings.
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cpu = True
    # Some models leave parameters unused for a given feature set (e.g. no abstract view).
    return Accelerator(cpu=cpu, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
