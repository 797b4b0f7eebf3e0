"""A pretrained transformer cut in two: frozen lower layers (whose output the layer cache
stores) and the top layer(s), tuned through LoRA adapters (peft) on the attention query/value
projections. Running `upper(lower(x))` equals the uncut model's last hidden states.

Two families: BERT (the embedded MiniLM, PLMNR) and LLaMA (SmolLM2 or any local
LlamaForCausalLM folder, DIRE). The lower part is deliberately *not* a registered sub-module:
it is frozen and, once the cache holds its output, never run in training, so it stays out of
parameters(), state_dict() and checkpoints (for a 7B model that is the whole point).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from recsys.errors import RecsysError

WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class LoraRecipe:
    """LoRA on the tuned layers' attention query/value projections."""

    rank: int
    alpha: float
    dropout: float


def folder_fingerprint(folder: Path) -> str:
    """Identity of a model folder: its resolved path, config and weight files (name, size, mtime)."""
    folder = Path(folder).resolve()
    digest = hashlib.sha256(str(folder).encode())
    digest.update((folder / "config.json").read_bytes())
    for file in sorted(folder.iterdir()):
        if file.name.endswith(WEIGHT_SUFFIXES):
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _quiet_hf():
    """transformers' load bars and 'unused weights' notes would clutter the trainer's display."""
    from contextlib import contextmanager

    from transformers.utils import logging as hf_logging

    @contextmanager
    def quiet():
        verbosity = hf_logging.get_verbosity()
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bar:
                hf_logging.enable_progress_bar()

    return quiet()


def _add_lora(module: nn.Module, targets: list[str], recipe: LoraRecipe) -> None:
    """Freeze `module`, then give its target projections trainable LoRA adapters."""
    from peft import LoraConfig, inject_adapter_in_model

    for parameter in module.parameters():
        parameter.requires_grad_(False)
    config = LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                        target_modules=targets, bias="none")
    inject_adapter_in_model(config, module)
    for name, parameter in module.named_parameters():
        parameter.requires_grad_("lora_" in name)
    cheap_dropouts(module)


def cheap_dropouts(module: nn.Module) -> None:
    """Replace every nn.Dropout under `module` (the tuned layers' own and LoRA's) by
    recsys.layers.dropout.Dropout: the same rate and train/eval behaviour, its CPU mask drawn a
    quarter as often (bernoulli_ was about 13 % of a PLMNR step); on CUDA it is F.dropout."""
    from recsys.layers.dropout import Dropout

    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p))


class SplitEncoder(nn.Module):
    """lower(ids, mask) -> states [N, L, H] (frozen, no grad); upper(states, mask) -> [N, L, H]."""

    hidden_size: int
    lower_layers: int
    fingerprint: str
    cache_dtype: str = "float16"  # how the layer cache stores lower()'s states

    def lower(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def upper(self, states: torch.Tensor, mask: torch.Tensor, constant_width: int = 0) -> torch.Tensor:
        """The tuned layers on `states` [N, L, H] with `mask` [N, L]. The first `constant_width`
        columns of states are constants (the cached text: no gradient flows to them), which a
        split may use to skip computing their input gradient."""
        raise NotImplementedError

    def packs_tokens(self, device: torch.device) -> bool:
        """Whether upper() on `device` runs only the real (mask) tokens, so that grouping news by
        length saves it nothing (LayerCachedNewsEncoder.forward_grad_rows then runs one group)."""
        return False

    def _frozen(self) -> nn.Module:
        return self.__dict__["_lower_module"]

    def _set_frozen(self, module: nn.Module) -> None:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        module.eval()
        self.__dict__["_lower_module"] = module  # unregistered on purpose, see the module doc

    def offload_frozen(self) -> None:
        """Back to the host once the cache holds the frozen layers' output: on a GPU they would
        otherwise keep their memory (14 GB for a 7B model in bf16) through all of training."""
        module = self._frozen()
        if next(module.parameters()).device.type != "cpu":
            module.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _frozen_on(self, device: torch.device) -> nn.Module:
        module = self._frozen()
        if next(module.parameters()).device != device:
            module.to(device)
        return module


def _padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[N, L] bool -> additive [N, 1, 1, L]: 0 on real keys, the dtype's minimum on padding."""
    return (~mask.to(torch.bool))[:, None, None, :].to(dtype) * torch.finfo(dtype).min


class BertSplit(SplitEncoder):
    """A BERT folder's first `keep_layers` layers; the last `tuned_layers` of them get LoRA."""

    def __init__(self, folder: Path, keep_layers: int, tuned_layers: int, lora: LoraRecipe) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig.from_pretrained(folder)
        keep = max(1, min(keep_layers, config.num_hidden_layers))
        tuned = max(1, min(tuned_layers, keep))
        config.num_hidden_layers = keep
        with _quiet_hf():
            bert = BertModel.from_pretrained(folder, config=config, add_pooling_layer=False, local_files_only=True)
        self.hidden_size = int(config.hidden_size)
        self.vocab_size = int(config.vocab_size)
        self.lower_layers = keep - tuned
        self.fingerprint = folder_fingerprint(folder)
        self.layers = nn.ModuleList(bert.encoder.layer[self.lower_layers :])
        bert.encoder.layer = nn.ModuleList(bert.encoder.layer[: self.lower_layers])
        bert.config.num_hidden_layers = self.lower_layers
        self._set_frozen(bert)
        _add_lora(self, ["query", "value"], lora)

    @torch.no_grad()
    def lower(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bert = self._frozen_on(ids.device)
        if self.lower_layers == 0:
            return bert.embeddings(input_ids=ids)
        return bert(input_ids=ids, attention_mask=mask.to(torch.long)).last_hidden_state

    def upper(self, states: torch.Tensor, mask: torch.Tensor, constant_width: int = 0) -> torch.Tensor:
        """On a CPU the real tokens only (upper_packed); elsewhere transformers' BertLayer on the
        padded batch (packing needs the token count on the host, a sync per call on a GPU, and
        padding costs a GPU little)."""
        if self.packs_tokens(states.device):
            return self.upper_packed(states, mask, constant_width)
        return self.upper_padded(states, mask)

    def packs_tokens(self, device: torch.device) -> bool:
        return device.type == "cpu"

    def upper_padded(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bias = _padding_bias(mask, states.dtype)
        for layer in self.layers:
            states = layer(states, attention_mask=bias)
            states = states[0] if isinstance(states, tuple) else states
        return states

    def upper_packed(self, states: torch.Tensor, mask: torch.Tensor, constant_width: int = 0) -> torch.Tensor:
        """upper_padded's values at the real positions (padding positions are 0 here; callers
        mask them out): the layers' linear maps, LayerNorms and GELU, nearly all of a step's
        arithmetic, run on the [tokens, H] matrix of the real tokens, so no padding token goes
        through them (4 length groups left 16 % padding on BENCHMARKS §2c's batches); only the
        attention scores use the padded [N, heads, L, L] layout. The layers' own modules (their LoRA
        adapters and dropouts) are called, only the self-attention's wiring is written out.
        The tokens of the first `constant_width` columns (the cached text) come first in the
        packed order, and the first layer's query/key/value projections run on them apart,
        detached: their input gradient, a quarter of the layer's backward multiplies, is never
        computed (only the joined category/image tokens need it)."""
        count, length, hidden = states.shape
        mask = mask.to(torch.bool)
        constant = mask & (torch.arange(length, device=mask.device) < constant_width)
        # flat positions of the real tokens, the constant ones first
        real = torch.cat([constant.reshape(-1).nonzero(), (mask & ~constant).reshape(-1).nonzero()]).squeeze(1)
        constants = int(constant.sum()) if constant_width else 0
        tokens = states.reshape(count * length, hidden).index_select(0, real)
        for layer in self.layers:
            context = _packed_self_attention(layer.attention.self, tokens, real, mask, constants)
            constants = 0  # a layer's output depends on every token's input: all carry gradient
            attended = layer.attention.output(context, tokens)
            tokens = layer.output(layer.intermediate(attended), attended)
        return tokens.new_zeros(count * length, hidden).index_copy_(0, real, tokens).view(count, length, hidden)


def _packed_self_attention(attention: nn.Module, tokens: torch.Tensor, real: torch.Tensor,
                           mask: torch.Tensor, constants: int = 0) -> torch.Tensor:
    """transformers' BertSelfAttention (encoder, no cache) on packed tokens [T, H] at flat
    positions `real` of the [N, L] `mask`: projections on the tokens, scores padded; the first
    `constants` tokens are projected detached (no input gradient). Its attention dropout is the
    cheap CPU mask (recsys/layers/dropout.py) on a CPU, as in the tuned layers' other dropouts,
    SDPA's own elsewhere."""
    from recsys.layers.dropout import dropout as cheap_dropout

    count, length = mask.shape
    hidden = tokens.shape[1]
    heads, head_size = attention.num_attention_heads, attention.attention_head_size
    parts = [(tokens[:constants].detach(), real[:constants]), (tokens[constants:], real[constants:])]
    parts = [(part, where) for part, where in parts if where.numel()] or [(tokens, real)]  # no token: empty

    def padded(linear: nn.Module) -> torch.Tensor:  # -> [N, heads, L, head_size]
        projected = [(linear(part), where) for part, where in parts]
        full = projected[0][0].new_zeros(count * length, hidden)  # the projections' dtype (autocast)
        for values, where in projected:
            full.index_copy_(0, where, values)  # in place: the buffer itself needs no gradient
        return full.view(count, length, heads, head_size).transpose(1, 2)

    query, key, value = padded(attention.query), padded(attention.key), padded(attention.value)
    bias = _padding_bias(mask, tokens.dtype)
    p = attention.dropout.p if attention.training else 0.0
    if p > 0 and tokens.device.type == "cpu":
        weights = torch.softmax(query @ key.transpose(-2, -1) * attention.scaling + bias, dim=-1)
        context = cheap_dropout(weights, p, True) @ value
    else:
        context = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=p,
                                                                   scale=attention.scaling)
    return context.transpose(1, 2).reshape(count * length, hidden).index_select(0, real)


FROZEN_RAM_SHARE = 0.5  # fp32 frozen weights above this share of the free RAM load in bf16 instead


def frozen_dtype(device_type: str, fp32_bytes: int, available_bytes: int, cuda_bf16: bool = True,
                 flags: frozenset[str] | None = None) -> torch.dtype:
    """The dtype of an LLM's frozen layers: bfloat16 on CUDA (float16 where the GPU lacks bf16)
    and on a CPU with native bf16; on other CPUs float32 (bf16 is emulated there and slower)
    unless the float32 weights would take more than FROZEN_RAM_SHARE of the available memory,
    then bfloat16 anyway: slower, but a 7B model needs 14 GB instead of 28."""
    from recsys.cpu import cpu_has_native_bf16

    if device_type == "cuda":
        return torch.bfloat16 if cuda_bf16 else torch.float16
    if cpu_has_native_bf16(flags) or fp32_bytes > FROZEN_RAM_SHARE * available_bytes:
        return torch.bfloat16
    return torch.float32


def available_memory(device_type: str) -> int:
    """Free bytes where the frozen layers will live: the current GPU's, or the host's RAM."""
    if device_type == "cuda":
        return int(torch.cuda.mem_get_info()[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62  # unknown: do not force bf16 on a machine we cannot measure


def llama_parameter_count(config) -> tuple[int, int]:
    """(all parameters, parameters of one decoder layer) of a LLaMA config, on the meta device."""
    from accelerate import init_empty_weights
    from transformers import LlamaModel

    with init_empty_weights():
        model = LlamaModel(config)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.layers[0].parameters())


def _announce(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


class LlamaSplit(SplitEncoder):
    """A LLaMA-family causal LM folder: all layers but the last `tuned_layers` frozen, those tuned
    with LoRA, then the final norm. Texts are right-padded; attention is causal and never sees a
    padded key, and rotary positions skip the padding (see `_run`).

    The frozen part loads in `dtype` (None: `frozen_dtype` for `device_type`), the tuned layers
    and the final norm are kept in float32; the memory the weights take is announced first."""

    def __init__(self, folder: Path, tuned_layers: int, lora: LoraRecipe, dtype: torch.dtype | None = None,
                 device_type: str = "cpu", announce=_announce) -> None:
        super().__init__()
        import copy

        from transformers import AutoConfig, LlamaModel

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise RecsysError(f"encoder folder {folder} has no config.json; pass a local Hugging Face LLaMA-family folder")
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if getattr(config, "model_type", "") != "llama":
            raise RecsysError(
                f"encoder folder {folder} holds a {getattr(config, 'model_type', '?')} model; "
                "DIRE needs a LLaMA-architecture causal LM folder (model_type llama)"
            )
        total = int(config.num_hidden_layers)
        tuned = max(1, min(tuned_layers, total))
        parameters, per_layer = llama_parameter_count(config)
        if dtype is None:
            cuda_bf16 = device_type != "cuda" or torch.cuda.is_bf16_supported()
            dtype = frozen_dtype(device_type, parameters * 4, available_memory(device_type), cuda_bf16)
        frozen_bytes = (parameters - tuned * per_layer) * torch.finfo(dtype).bits // 8
        announce(f"{folder.name}: loading {total - tuned} frozen layers in {str(dtype).removeprefix('torch.')} "
                 f"(about {frozen_bytes / 2**30:.2f} GiB) and {tuned} tuned in float32 "
                 f"(about {tuned * per_layer * 4 / 2**30:.2f} GiB, plus LoRA and optimizer state)")
        with _quiet_hf():
            model = LlamaModel.from_pretrained(folder, local_files_only=True, dtype=dtype)
        self.frozen_dtype = dtype
        self.cache_dtype = "bfloat16" if dtype == torch.bfloat16 else "float16"
        self.hidden_size = int(config.hidden_size)
        self.lower_layers = total - tuned
        self.fingerprint = folder_fingerprint(folder)
        # the tuned top and the final norm train in float32 whatever the frozen part's dtype
        self.layers = nn.ModuleList(model.layers[self.lower_layers :]).to(torch.float32)
        self.norm = model.norm.to(torch.float32)
        self.rotary = copy.deepcopy(model.rotary_emb).to(torch.float32)
        model.layers = nn.ModuleList(model.layers[: self.lower_layers])
        model.norm = nn.Identity()
        self._set_frozen(model)
        _add_lora(self, ["q_proj", "v_proj"], lora)
        for parameter in self.norm.parameters():  # the final norm is part of the frozen model
            parameter.requires_grad_(False)

    @staticmethod
    def _bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Causal plus padding, additive [N, 1, L, L]; a row never ends up with no key at all."""
        length = mask.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
        allowed = causal[None] & mask.to(torch.bool)[:, None, :]
        allowed |= torch.eye(length, dtype=torch.bool, device=mask.device)[None]
        return (~allowed)[:, None].to(dtype) * torch.finfo(dtype).min

    def _run(self, layers, rotary, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Positions count real tokens only: a token joined after a padded text (category, image)
        # sits right after that news' last word whatever the batch's padded width, so a news
        # vector never depends on the batch it is encoded in.
        positions = (mask.to(torch.long).cumsum(dim=1) - 1).clamp_min(0)
        embeddings = rotary(states, positions)
        bias = self._bias(mask, states.dtype)
        for layer in layers:
            states = layer(states, attention_mask=bias, position_ids=positions, position_embeddings=embeddings)
            states = states[0] if isinstance(states, tuple) else states
        return states

    @torch.no_grad()
    def lower(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        model = self._frozen_on(ids.device)
        return self._run(model.layers, model.rotary_emb, model.embed_tokens(ids), mask)

    def upper(self, states: torch.Tensor, mask: torch.Tensor, constant_width: int = 0) -> torch.Tensor:
        # states from the frozen part (or its cache) may be 16-bit; the tuned top runs in its own dtype
        states = states.to(self.norm.weight.dtype)
        return self.norm(self._run(self.layers, self.rotary, states, mask))


def load_llama_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    with _quiet_hf():
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # the split relies on right padding (see LlamaSplit)
    return tokenizer
