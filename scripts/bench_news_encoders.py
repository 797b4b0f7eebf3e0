"""Language-model news encoders on a small synthetic dataset (issue 11 items 2-3).

Usage: .venv/bin/python scripts/bench_news_encoders.py [--news 400] [--users 200] [--epochs 2]
           [--steps 5] [--models nrms,plmnr,plmnr-nohist,plmnr-cached,plmnr-states,dire] [--train-seeds 1,2]
           [--encoder PATH] [--step-bf16] [--out bench-results] [--smoke]
       .venv/bin/python scripts/bench_news_encoders.py --compare RUN.json... [--compare-base plmnr] [--margin 0.01]
Prints two tables and writes OUT/news_encoders.json.

1. PLMNR step time, old vs new, side by side in this run on the same batches: the previous PLMNR
   (every news through all `transformer_layers` MiniLM layers, forward and backward, LoRA on
   each; kept below as LegacyPLMNR) against the new one (frozen lower layers read from the
   layer cache, the top layer tuned with LoRA), with plmnr_history exact ("new"), no-grad
   ("new-nohist"), cached ("new-cached") and states ("new-states"; the tables' refresh, once per
   epoch, is timed apart and also shown spread over an epoch's steps). --step-bf16 adds old, new,
   new-cached and new-states under bf16 autocast (old-bf16, new-bf16, new-cached-bf16,
   new-states-bf16) where the CPU has native bf16 (avx512_bf16/
   amx_bf16) or on CUDA; their speed-ups are shown against old (float32) and old-bf16. All use the trainer's step
   (TrainStep under accelerate, the default optimizer) on the trainer's batches, their steps
   interleaved round by round; --warmup steps are not timed.
2. NRMS, the old PLMNR, PLMNR and DIRE (the embedded SmolLM2, or --encoder) trained with the trainer
   (recsys.train.run_training) for --epochs: test AUC (all users), training samples/s (mean
   over epochs) and the time to build the layer cache (PLMNR, DIRE; part of the run's wall time).
Defaults are the trainer's (history 50, titles of 30 tokens, batch 64); nothing is tuned here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DATASET = "synth"


def prepare_data(args: argparse.Namespace):
    """The encoded `original` variant of a synthetic dataset (generated, imported, cached under OUT)."""
    from genre_local.data.mind_import import import_mind
    from genre_local.data.synth import SynthSpec, write_synthetic_mind
    from genre_local.store import open_store
    from genre_local.store.variants import fetch_encoded
    from recsys.variants import VariantSpec

    folder = args.out / f"synth-{args.news}n-{args.users}u-s{args.seed}"
    if not (folder / "train" / "behaviors.tsv").exists():
        write_synthetic_mind(folder, SynthSpec(news=args.news, users=args.users, seed=args.seed), force=True)
    work = args.out / "news-encoders"
    work.mkdir(parents=True, exist_ok=True)
    with open_store(work / f"store-{folder.name}.duckdb") as store:
        if DATASET not in store.dataset_names():
            import_mind(store, folder, DATASET)
        data, _ = fetch_encoded(store.conn, DATASET, VariantSpec(), ("title", "category"), args.title_len, 50, None,
                                work / "cache")
    return data, work


def legacy_plmnr_class():
    """The PLMNR this issue replaced, as it was: the whole cut MiniLM with LoRA (peft) on every
    layer's query/value runs forward and backward for every news at every step, mean-pooled and
    projected, category as a separate view joined by additive attention."""
    import torch
    from torch import nn

    from recsys.layers import AdditiveAttention, NewsFeatureEmbedder, masked_mean
    from recsys.models.base import MatchingModel
    from recsys.models.nrms import NRMSUserEncoder
    from recsys.pretrained import load_minilm_encoder

    class LegacyPLMNR(MatchingModel):
        name = "plmnr-legacy"

        def __init__(self, config, sizes) -> None:
            super().__init__(config, sizes)
            from peft import LoraConfig, get_peft_model

            bert = load_minilm_encoder(num_layers=config.transformer_layers)
            lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank, lora_dropout=config.dropout,
                              target_modules=["query", "value"], bias="none")
            self.plm = get_peft_model(bert, lora)
            self.project = nn.Linear(bert.config.hidden_size, config.embed_dim)
            self.text_fields = tuple(f for f in ("title", "abstract") if config.uses(f))
            self.special_fields = tuple(f for f in config.features if f not in ("title", "abstract"))
            self.embedder = NewsFeatureEmbedder(self.special_fields, config.embed_dim, sizes.vocab_size,
                                                sizes.num_categories, sizes.num_subcategories)
            self.view_pool = AdditiveAttention(config.embed_dim)
            self.user_encoder = NRMSUserEncoder(config)

        def text_vector(self, ids, mask):
            mask = mask.to(torch.bool)
            used = torch.nonzero(mask.any(dim=0))
            width = int(used.max()) + 1 if used.numel() else 1
            ids, mask = ids[:, :width], mask[:, :width]
            states = self.plm(input_ids=ids, attention_mask=mask.to(torch.long)).last_hidden_state
            return self.project(masked_mean(states, mask))

        def encode_news(self, news):
            views = [self.text_vector(getattr(news, f), getattr(news, f"{f}_mask")) for f in self.text_fields]
            views += [self.embedder.special(news, f)[0] for f in self.special_fields]
            return self.view_pool(torch.stack(views, dim=1))

        def encode_user(self, history, user):
            return self.fuse(self.user_encoder(history, user.history_mask), user)

    return LegacyPLMNR


def model_config(args: argparse.Namespace, encoder: str | None = None, plmnr_history: str = "exact"):
    from recsys.models import ModelConfig

    return ModelConfig(features=("title", "category"), title_len=args.title_len, history_len=args.history_len,
                       encoder=encoder, plmnr_history=plmnr_history)


class StepTimer:
    """One model's trainer steps (TrainStep under accelerate, the default optimizer) on the first
    warmup+steps batches of the training split, one step per call of `step()`."""

    def __init__(self, model, data, args: argparse.Namespace, bf16: bool = False) -> None:
        from recsys.data import BatchStream, TrainSamples, epoch_batches
        from recsys.train import TrainStep, make_accelerator, make_optimizer

        self.accelerator = make_accelerator()
        self.module, self.optimizer = self.accelerator.prepare(TrainStep(model), make_optimizer(model, 1e-3, 0.01))
        samples = TrainSamples(data, data.split("train"), "matching", 4, args.history_len)
        self.batches = iter(BatchStream(samples, epoch_batches(len(samples), args.batch_size, 1, 0)[: args.warmup + args.steps], 1, 0))
        self.module.train()
        self.bf16 = bf16
        self.seconds: list[float] = []
        self.cpu_seconds = 0.0  # this process's CPU time in the timed steps (all torch threads)
        self.samples = 0

    def step(self, timed: bool) -> None:
        import torch

        batch = next(self.batches).to(self.accelerator.device)
        started, cpu_started = time.perf_counter(), time.process_time()
        with torch.autocast(self.accelerator.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.module(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.optimizer.step()
        if timed:
            self.seconds.append(time.perf_counter() - started)
            self.cpu_seconds += time.process_time() - cpu_started
            self.samples += len(batch)

    def summary(self) -> dict:
        total = sum(self.seconds)
        return {"steps": len(self.seconds), "step_seconds": total / max(1, len(self.seconds)),
                "cpu_seconds": self.cpu_seconds / max(1, len(self.seconds)),
                "samples_per_s": self.samples / total if total else 0.0, "per_step": self.seconds}


# label -> (plmnr_history, bf16 autocast); "old" and "old-bf16" are LegacyPLMNR
STEP_VARIANTS = {"new": ("exact", False), "new-nohist": ("no-grad", False), "new-cached": ("cached", False),
                 "new-states": ("states", False), "new-bf16": ("exact", True), "new-cached-bf16": ("cached", True),
                 "new-states-bf16": ("states", True)}
BF16_LABELS = ("old-bf16", "new-bf16", "new-cached-bf16", "new-states-bf16")


def step_labels(args: argparse.Namespace) -> list[str]:
    """The step variants this run times: bf16 only on request and where the hardware has it."""
    import torch

    from recsys.cpu import cpu_has_native_bf16

    labels = ["old", "new", "new-nohist", "new-cached", "new-states"]
    if args.step_bf16:
        if torch.cuda.is_available() or cpu_has_native_bf16():
            labels.extend(BF16_LABELS)
        else:
            print("--step-bf16: this CPU has no avx512_bf16/amx_bf16; the bf16 variants are skipped", file=sys.stderr)
    return labels


def plmnr_step_ratio(data, args: argparse.Namespace) -> dict:
    """Old and the new PLMNR's history modes on the same batches, their steps interleaved (round r
    runs step r of each, in rotating order) so the load of a shared machine falls on all alike;
    ratios are of the mean step time and the median of per-round ratios, against "old" (float32;
    with --step-bf16 also against "old-bf16", the old model under the same autocast: a speed-up
    of bf16 alone is the hardware's, not the layer cache's). The cached and states variants'
    table refresh (once per epoch in the trainer) is timed once before the rounds."""
    import math
    import statistics

    import torch

    from recsys.models import build_model
    from recsys.train import feature_sizes

    sizes = feature_sizes(data)
    labels = step_labels(args)
    timers, extra = {}, {}
    torch.manual_seed(0)
    timers["old"] = StepTimer(legacy_plmnr_class()(model_config(args), sizes), data, args)
    if "old-bf16" in labels:
        torch.manual_seed(0)
        timers["old-bf16"] = StepTimer(legacy_plmnr_class()(model_config(args), sizes), data, args, bf16=True)
    for label in labels[1:]:
        if label == "old-bf16":
            continue
        history, bf16 = STEP_VARIANTS[label]
        torch.manual_seed(0)
        model = build_model("plmnr", model_config(args, plmnr_history=history), sizes)
        started = time.perf_counter()
        model.prepare_news(data.news, args.out / "news-encoders" / "layers")
        extra[label] = {"cache_seconds": time.perf_counter() - started}
        timers[label] = StepTimer(model, data, args, bf16=bf16)
        if history in ("cached", "states"):
            started = time.perf_counter()
            model.start_epoch()
            extra[label]["refresh_seconds"] = time.perf_counter() - started
    steps_per_epoch = math.ceil(len(data.split("train")) / args.batch_size)
    for round_ in range(args.warmup + args.steps):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            timers[label].step(timed=round_ >= args.warmup)
    out = {label: timer.summary() for label, timer in timers.items()}
    out["steps_per_epoch"] = steps_per_epoch
    for label in labels[1:]:
        out[label] |= extra.get(label, {})
        if "refresh_seconds" in out[label]:
            # the refresh spread over one epoch's steps: what a trained epoch pays per step
            with_refresh = out[label]["step_seconds"] + out[label]["refresh_seconds"] / steps_per_epoch
            out[f"speedup_{label}_with_refresh"] = out["old"]["step_seconds"] / max(with_refresh, 1e-12)
        out[f"speedup_{label}"] = out["old"]["step_seconds"] / max(out[label]["step_seconds"], 1e-12)
        out[f"median_round_speedup_{label}"] = statistics.median(
            o / max(n, 1e-12) for o, n in zip(out["old"]["per_step"], out[label]["per_step"]))
        if "old-bf16" in out and label in BF16_LABELS[1:]:
            out[f"speedup_{label}_vs_old-bf16"] = out["old-bf16"]["step_seconds"] / max(out[label]["step_seconds"], 1e-12)
    out["speedup"] = out["speedup_new"]
    return out


class _LegacyBuild:
    """`plmnr-old` in --models: the trainer builds LegacyPLMNR where it would build PLMNR (the
    trainer takes no model factory; swapping the registry's builder for one run is the bench's
    own business)."""

    def __init__(self, active: bool) -> None:
        self.active = active

    def __enter__(self):
        import recsys.models as models

        self.original = models.build_model
        if self.active:
            legacy = legacy_plmnr_class()
            models.build_model = lambda name, config, sizes: legacy(config, sizes)
        return self

    def __exit__(self, *exc) -> None:
        import recsys.models as models

        models.build_model = self.original


TRAIN_HISTORY = {"plmnr-nohist": "no-grad", "plmnr-cached": "cached", "plmnr-states": "states"}  # --models name -> plmnr_history


def train_models(data, work: Path, args: argparse.Namespace) -> dict:
    from recsys.train import RunSettings, make_accelerator, run_training

    results = {}
    for name, seed in [(name, seed) for seed in args.train_seeds for name in args.models]:
        encoder = str(args.encoder) if name == "dire" else None
        settings = RunSettings(
            model="plmnr" if name.startswith("plmnr") else name, seed=seed, epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=256, lr=1e-3,
            weight_decay=0.01, negatives=4, patience=args.epochs, history_len=args.history_len, bf16=args.bf16,
            model_config=model_config(args, encoder, TRAIN_HISTORY.get(name, "exact")), layer_cache_dir=work / "layers",
        )
        print(f"[{name} seed {seed}] training {args.epochs} epoch(s) ...", file=sys.stderr, flush=True)
        started, cpu_started = time.perf_counter(), time.process_time()
        with _LegacyBuild(name == "plmnr-old"):
            result = run_training(make_accelerator(), data, settings)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        results[name if len(args.train_seeds) == 1 else f"{name}@{seed}"] = {
            "auc": result.metrics[result.eval_split]["all"]["auc"],
            "eval_split": result.eval_split,
            "samples_per_s": sum(result.train_samples_per_s) / len(result.train_samples_per_s),
            "train_seconds": sum(result.epoch_seconds),
            "wall_seconds": wall,
            "cpu_seconds": cpu,  # this process's CPU time for the whole run (cache, training, evaluation)
            "best_epoch": result.best_epoch,
            "dev_auc": result.dev_auc,
            "autocast": result.autocast,
        }
    return results


def render(report: dict) -> None:
    step = report.get("plmnr_steps")
    if step:
        labels = [label for label in ("old", "old-bf16", *STEP_VARIANTS) if label in step]
        print("PLMNR trainer step (same batches)      s/step   samples/s   CPU s/step")
        for label in labels:
            row = step[label]
            print(f"  {label:<36} {row['step_seconds']:>7.3f} {row['samples_per_s']:>11.1f} {row['cpu_seconds']:>12.3f}")
        for label in labels[1:]:
            refresh = step[label].get("refresh_seconds")
            print(f"  speed-up {label} vs old: {step[f'speedup_{label}']:.1f}x on mean step time, "
                  f"{step[f'median_round_speedup_{label}']:.1f}x median of {step[label]['steps']} rounds"
                  + (f"; {step[f'speedup_{label}_with_refresh']:.1f}x with its {refresh:.2f} s table refresh "
                     f"spread over {step['steps_per_epoch']} steps" if refresh is not None else "")
                  + (f"; {step[f'speedup_{label}_vs_old-bf16']:.1f}x vs old-bf16"
                     if f"speedup_{label}_vs_old-bf16" in step else ""))
    print("model          test AUC   train samples/s   train s   wall s (incl. cache, eval)")
    for name, row in report["models"].items():
        print(f"  {name:<12} {row['auc']:>8.4f} {row['samples_per_s']:>17.1f} {row['train_seconds']:>9.1f} "
              f"{row['wall_seconds']:>9.1f}")


def seed_aucs(reports: list[dict]) -> dict[str, dict[int, float]]:
    """Test AUC by arm and training seed from saved news_encoders.json reports (one seed per run,
    or several as "name@seed"); the arm is the --models name, "+bf16" when trained under bf16
    autocast (the run's `autocast`; reports from before it was recorded: --bf16 on).
    A seed run twice for one arm is an error: which one counts would be a choice after the fact."""
    aucs: dict[str, dict[int, float]] = {}
    for report in reports:
        seeds = json.loads(report["args"]["train_seeds"])
        for key, row in report["models"].items():
            name, _, seed = key.partition("@")
            bf16 = row["autocast"] == "bfloat16" if "autocast" in row else report["args"]["bf16"] == "on"
            arm = name + ("+bf16" if bf16 else "")
            seed_ = int(seed) if seed else seeds[0]
            if seed_ in aucs.setdefault(arm, {}):
                raise ValueError(f"--compare: {arm} seed {seed_} appears twice; keep one report per run")
            aucs[arm][seed_] = row["auc"]
    return aucs


def compare_lines(aucs: dict[str, dict[int, float]], base: str, margin: float) -> list[str]:
    """Every other arm against `base`, paired on the seeds both have: base − arm, its paired t
    p-value, 95 % CI and TOST within ±margin (equivalent iff the 90 % CI is inside)."""
    from recsys.stats import mean_std, paired_difference

    if base not in aucs:
        raise ValueError(f"--compare: no {base} runs among the reports (arms: {', '.join(sorted(aucs))})")
    lines = []
    for arm in [base, *sorted(a for a in aucs if a != base)]:
        mean, std = mean_std(list(aucs[arm].values()))
        lines.append(f"{arm:<16} n {len(aucs[arm]):>2}  AUC {mean:.4f} ± {std or 0:.4f}")
    for arm in sorted(a for a in aucs if a != base):
        seeds = sorted(set(aucs[base]) & set(aucs[arm]))
        d = paired_difference([aucs[base][s] for s in seeds], [aucs[arm][s] for s in seeds], margin)
        if d is None:
            lines.append(f"{base} − {arm}: fewer than 2 paired seeds")
            continue
        lines.append(f"{base} − {arm} over {d.n} seeds: {d.mean:+.4f} (sd {d.std:.4f}), paired t p {d.p_value:.3g}, "
                     f"95 % CI {d.ci95[0]:+.4f}..{d.ci95[1]:+.4f}, 90 % CI {d.ci90[0]:+.4f}..{d.ci90[1]:+.4f}, "
                     f"TOST ±{margin:g} p {d.tost_p:.3g}: {'equivalent' if d.equivalent else 'equivalence not shown'}")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--news", type=int, default=400)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed PLMNR steps per implementation")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--history-len", type=int, default=50)
    parser.add_argument("--title-len", type=int, default=30)
    parser.add_argument("--models", default="nrms,plmnr-old,plmnr,dire",
                        help="plmnr-old: the PLMNR before the layer cache, for its AUC beside the new one; "
                        "plmnr-nohist / plmnr-cached / plmnr-states: PLMNR with plmnr_history no-grad / cached / states")
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="off",
                        help="[train] bf16 of part 2's trainings (default off: float32, as the stored AUC runs; "
                        "auto: the trainer's choice, which for PLMNR on a native-bf16 CPU is bf16)")
    parser.add_argument("--step-bf16", action="store_true",
                        help="part 1 also times the old PLMNR, exact and cached under bf16 autocast "
                        "(CPUs with native bf16, CUDA)")
    parser.add_argument("--train-seeds", default="1", help="comma-separated training seeds of part 2")
    parser.add_argument("--encoder", type=Path, default=None,
                        help="DIRE's LLaMA-family folder (default: the embedded SmolLM2, prepared under OUT)")
    parser.add_argument("--no-step-ratio", action="store_true", help="skip part 1 (old vs new PLMNR steps)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--compare", type=Path, nargs="+", default=None, metavar="JSON",
                        help="run nothing: per-arm AUC over seeds from saved reports and each arm against "
                        "--compare-base (paired t, 95 %% CI, TOST within ±--margin)")
    parser.add_argument("--compare-base", default="plmnr")
    parser.add_argument("--margin", type=float, default=0.01, help="--compare's equivalence margin (AUC)")
    args = parser.parse_args(argv)
    if args.compare:
        missing = [str(p) for p in args.compare if not p.is_file()]
        if missing:
            parser.error(f"--compare: no such report {missing[0]}; give news_encoders.json files")
        try:
            aucs = seed_aucs([json.loads(p.read_text()) for p in args.compare])
            lines = compare_lines(aucs, args.compare_base, args.margin)
        except ValueError as err:
            parser.error(str(err))
        print("\n".join(lines))
        return {"aucs": aucs}
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.train_seeds = [int(s) for s in args.train_seeds.split(",") if s.strip()]
    if args.smoke:
        args.news, args.users, args.epochs, args.steps, args.warmup = 150, 60, 1, 1, 0
        args.batch_size, args.history_len, args.title_len = 16, 10, 12
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if "dire" in args.models and args.encoder is None:
        from genre_local.llm.models import prepare_embedded

        args.encoder = prepare_embedded(args.out / "models" / "smollm2")
    data, work = prepare_data(args)
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "news": len(data.news_ids),
                    "train_impressions": len(data.split("train")), "threads": torch.get_num_threads()}
    if not args.no_step_ratio:
        report["plmnr_steps"] = plmnr_step_ratio(data, args)
    report["models"] = train_models(data, work, args)
    (args.out / "news_encoders.json").write_text(json.dumps(report, indent=1))
    render(report)
    return report


if __name__ == "__main__":
    main()
