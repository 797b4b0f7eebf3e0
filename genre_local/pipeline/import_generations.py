"""`genre-local generations import`: outputs produced elsewhere (e.g. the GPT-3.5 outputs GENRE's
authors released) stored as one more generation source, next to local models' outputs.

A file is TSV, CSV (a header line) or JSONL (one object a line). Each row has an id column
(`id`, `input_id`, `nid` or `user_id`: the news id for summarize, the user id otherwise) and
the output: an `output` (or `text`, `raw_output`, `title`) column holding plain text or the
task's JSON; a JSONL row may instead carry the task's JSON fields themselves (`title`;
`topics`/`regions`; `items`). A plain-text summary is the enhanced title itself. Optional
columns `prompt_tokens`, `completion_tokens` and `latency_s` give costs; without them they are
NULL. Each import also writes one `generation_runs` row (provenance `imported`, migration 009):
rows stored and skipped, and the file's token and latency totals when every stored row gave them,
else NULL (unknown); attempts, wall time and money are always NULL, as no local engine ran.
Every row is validated with the task's own parser (genre_local/llm/tasks.py).

Unknown ids, unparsable rows and duplicate ids are problems named as file:line. By default any
problem stores nothing; with `skip_invalid` the valid rows are stored and the rest counted. The
rows are written in one transaction with provenance `imported`, under the source (LLM name,
prompt set; default set "imported"), keyed by a fingerprint of (task, input, LLM, prompt set),
so importing the same file again replaces its rows instead of duplicating them.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genre_local.errors import UserError
from genre_local.llm.tasks import GenerationTask, Subject
from genre_local.store.connection import Store, now_utc
from genre_local.store.generations import (
    IMPORTED,
    IMPORTED_PROMPT_SET,
    GenerationRecord,
    GenerationRunRecord,
    GenerationSource,
    parsed_json,
    write_imported_generations,
)

ID_COLUMNS = ("id", "input_id", "nid", "user_id")
TEXT_COLUMNS = ("output", "text", "raw_output")
COST_COLUMNS = ("prompt_tokens", "completion_tokens", "latency_s")
FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
IMPORT_BACKEND = "import"
MAX_LISTED_PROBLEMS = 5  # the error line names the first few problems and counts the rest


@dataclass(frozen=True)
class ImportRequest:
    path: Path
    dataset: str
    task: GenerationTask
    llm: str
    prompt_set: str = IMPORTED_PROMPT_SET
    skip_invalid: bool = False
    per_user: int | None = None  # news/chain: items kept per user (None: as many as each row has)

    @property
    def source(self) -> GenerationSource:
        return GenerationSource(self.llm, self.prompt_set)


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str


@dataclass(frozen=True)
class ImportedRow:
    line: int
    input_id: str
    raw_output: str
    parsed: dict[str, Any]
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None


@dataclass(frozen=True)
class ImportResult:
    source: GenerationSource
    run_id: str
    stored: int
    skipped: tuple[RowProblem, ...]  # with skip_invalid: the rows left out
    prompt_tokens: int | None = None  # the file's totals; None: unknown (a row gave none)
    completion_tokens: int | None = None


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unknown file type '{path.suffix}'; use .tsv, .csv or .jsonl")
    return fmt


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line, record, problem) per data row; a row that cannot be read has a problem instead."""
    fmt = file_format(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if fmt == "jsonl":
                for number, text in enumerate(handle, start=1):
                    if not text.strip():
                        continue
                    try:
                        value = json.loads(text)
                    except json.JSONDecodeError as exc:
                        yield number, None, f"not a JSON object ({exc.msg})"
                        continue
                    if not isinstance(value, dict):
                        yield number, None, "not a JSON object"
                        continue
                    yield number, value, None
                return
            reader = csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ",",
                                    quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
            header = reader.fieldnames or []
            if not any(c in header for c in ID_COLUMNS):
                raise UserError(f"{path}:1: the header has no id column; name one of {', '.join(ID_COLUMNS)}")
            line = 1
            for row in reader:
                start, line = line + 1, reader.line_num
                if None in row:  # more fields than the header
                    yield start, None, f"{len(header) + len(row[None])} fields, the header has {len(header)}"
                    continue
                yield start, dict(row), None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from exc
    except csv.Error as exc:
        raise UserError(f"{path}: {exc}") from exc


def _first(record: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = record.get(name)
        if value is not None and value != "":
            return value
    return None


def _output_text(record: dict[str, Any], task: GenerationTask) -> str | None:
    """The row's output as text the task's parser reads; None when the row has none."""
    value = _first(record, TEXT_COLUMNS)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if value is not None:
        text = str(value)
        if task.name == "summarize" and not text.lstrip().startswith("{"):
            return json.dumps({"title": text}, ensure_ascii=False)  # plain text: the title itself
        return text
    if any(name in record for name in TEXT_COLUMNS):
        return None  # an output column, left empty
    fields = {k: v for k, v in record.items() if k not in ID_COLUMNS and k not in COST_COLUMNS}
    if not fields:
        return None
    if task.name == "summarize" and "title" in fields:
        return json.dumps({"title": fields["title"]}, ensure_ascii=False)
    return json.dumps(fields, ensure_ascii=False)


def _cost(record: dict[str, Any], name: str, kind: type) -> tuple[Any, str | None]:
    value = record.get(name)
    if value is None or value == "":
        return None, None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        return None, f"{name} {value!r} is not a number"
    if number < 0:
        return None, f"{name} {value!r} is negative"
    return number, None


def _items_in(text: str) -> int:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return 1
    items = value.get("items") if isinstance(value, dict) else None
    return max(1, len(items)) if isinstance(items, list) else 1


def parse_rows(request: ImportRequest, known_ids: set[str]) -> tuple[list[ImportedRow], list[RowProblem]]:
    """Every row of the file checked: (valid rows, problems), both in file order."""
    task = request.task
    rows: list[ImportedRow] = []
    problems: list[RowProblem] = []
    first_line: dict[str, int] = {}
    what = "news id" if task.subject is Subject.NEWS else "user id"
    for line, record, problem in read_records(request.path):
        if record is None:
            problems.append(RowProblem(line, problem or "unreadable row"))
            continue
        raw_id = _first(record, ID_COLUMNS)
        if raw_id is None:
            problems.append(RowProblem(line, f"no id (a column {', '.join(ID_COLUMNS)})"))
            continue
        input_id = str(raw_id).strip()
        if input_id not in known_ids:
            problems.append(RowProblem(line, f"unknown {what} '{input_id}' in dataset '{request.dataset}'"))
            continue
        if input_id in first_line:
            problems.append(RowProblem(line, f"duplicate {what} '{input_id}' (first on line {first_line[input_id]})"))
            continue
        first_line[input_id] = line
        text = _output_text(record, task)
        if text is None:
            problems.append(RowProblem(line, f"no output (a column {', '.join(TEXT_COLUMNS)} or the task's JSON)"))
            continue
        per_user = request.per_user if request.per_user is not None else _items_in(text)
        parsed = task.parse(text, per_user)
        if parsed.value is None:
            problems.append(RowProblem(line, f"invalid {task.name} output: {parsed.error}"))
            continue
        costs: dict[str, Any] = {}
        cost_problem = None
        for name, kind in (("prompt_tokens", int), ("completion_tokens", int), ("latency_s", float)):
            costs[name], error = _cost(record, name, kind)
            cost_problem = cost_problem or error
        if cost_problem:
            problems.append(RowProblem(line, cost_problem))
            continue
        raw = _first(record, TEXT_COLUMNS)
        raw_text = raw if isinstance(raw, str) else text
        rows.append(ImportedRow(line, input_id, raw_text, parsed.value, **costs))
    return rows, problems


def problems_line(path: Path, problems: list[RowProblem]) -> str:
    listed = "; ".join(f"{path}:{p.line}: {p.message}" for p in problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    return listed + (f" (and {more} more)" if more > 0 else "")


def import_fingerprint(dataset: str, task: str, input_id: str, source: GenerationSource) -> str:
    """The key of an imported output: a rerun of the same import replaces, never duplicates.
    It never equals a local generation's key (their prompt version is a template hash)."""
    from genre_local.pipeline.plan import fingerprint

    return fingerprint(dataset, task, input_id, source.llm, f"{IMPORTED}:{source.prompt_set}",
                       {"provenance": IMPORTED}, 1)


def known_input_ids(store: Store, dataset: str, subject: Subject) -> set[str]:
    if subject is Subject.NEWS:
        sql = "SELECT nid FROM news WHERE dataset = ?"
    else:
        sql = "SELECT DISTINCT user_id FROM impressions WHERE dataset = ?"
    return {row[0] for row in store.conn.execute(sql, [dataset]).fetchall()}


def import_generations(store: Store, request: ImportRequest) -> ImportResult:
    """Check the whole file, then store its valid rows in one transaction (or nothing: UserError
    naming the problems as file:line, unless `skip_invalid`)."""
    if not request.llm.strip():
        raise UserError("--llm must name the LLM that wrote the outputs, e.g. --llm gpt-3.5-turbo")
    if not request.prompt_set.strip():
        raise UserError("--prompt-set must not be empty")
    if request.per_user is not None and request.per_user < 1:
        raise UserError(f"--per-user {request.per_user} must be at least 1")
    store.require_dataset(request.dataset)
    rows, problems = parse_rows(request, known_input_ids(store, request.dataset, request.task.subject))
    if problems and not request.skip_invalid:
        raise UserError(f"{problems_line(request.path, problems)}; nothing stored; fix the rows or pass --skip-invalid")
    if not rows:
        raise UserError(f"{request.path}: no valid rows to import" + (f" ({len(problems)} invalid)" if problems else ""))
    source = request.source
    run_id = f"import-{uuid.uuid4().hex[:12]}"
    created = now_utc()
    records = [
        GenerationRecord(
            fingerprint=import_fingerprint(request.dataset, request.task.name, row.input_id, source),
            dataset=request.dataset, task=request.task.name, input_id=row.input_id, model=source.llm,
            prompt_version=f"{IMPORTED}:{source.prompt_set}", round=1, attempt=1, run_id=run_id,
            backend=IMPORT_BACKEND, sampling=json.dumps({"provenance": IMPORTED}), prompt="[]",
            raw_output=row.raw_output, parsed=parsed_json(row.parsed), valid=True, error=None,
            prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens, latency_s=row.latency_s,
            created_at=created, prompt_set=source.prompt_set, provenance=IMPORTED,
        )
        for row in rows
    ]
    run = import_run(request, run_id, created, rows, len(problems))
    write_imported_generations(store, records, run)
    return ImportResult(source, run_id, len(records), tuple(problems), run.prompt_tokens, run.completion_tokens)


def known_total(values: list[Any]) -> Any:
    """The sum when every row gave the value; None (unknown) when any row did not: a partial
    sum would read as the whole import's cost."""
    if not values or any(v is None for v in values):
        return None
    return sum(values)


def import_run(request: ImportRequest, run_id: str, started: Any, rows: list[ImportedRow],
               invalid: int) -> GenerationRunRecord:
    """The import's `generation_runs` row: what it stored, and its cost as far as the file gave it.
    No engine ran here, so attempts, start-up, wall time and money are unknown (NULL), never 0."""
    return GenerationRunRecord(
        run_id=run_id, dataset=request.dataset, task=request.task.name, model=request.llm,
        backend=IMPORT_BACKEND, round=1, started_at=started, requests=len(rows) + invalid, new=len(rows),
        skipped=0, valid=len(rows), invalid=invalid, attempts=None,
        prompt_tokens=known_total([r.prompt_tokens for r in rows]),
        completion_tokens=known_total([r.completion_tokens for r in rows]),
        engine_seconds=known_total([r.latency_s for r in rows]),
        startup_seconds=None, wall_seconds=None, price_per_hour=None, cost=None,
        prompt_set=request.prompt_set, provenance=IMPORTED,
    )
