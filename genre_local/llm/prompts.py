"""Prompt templates: prompts/<set>/<task>.txt (a folder per prompt set, llm/prompt_sets.py), a
system part (shared by every request of the task, so vLLM's prefix cache reuses it) and a user
part holding the per-item text.

File format: a line `=== system ===`, the system text, a line `=== user ===`, the user text.
Slots are `${name}` (string.Template), filled with plain text that is never re-parsed, so
braces or dollar signs inside news titles cannot break rendering.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

import genre_local
from genre_local.errors import UserError

_MARKER = re.compile(r"^=== (system|user) ===[ \t]*$", re.MULTILINE)


def prompts_dir() -> Path:
    """prompts/ beside the genre_local package (the project root in a checkout); a folder per set."""
    return Path(genre_local.__file__).resolve().parent.parent / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    system: Template
    user: Template
    version: str  # hash of the file: changes whenever the wording changes

    def render(self, slots: dict[str, str]) -> list[dict[str, str]]:
        """The chat conversation for one request."""
        try:
            return [
                {"role": "system", "content": self.system.substitute(slots)},
                {"role": "user", "content": self.user.substitute(slots)},
            ]
        except (KeyError, ValueError) as exc:
            raise UserError(f"{self.path}: slot {exc} is not known for task '{self.name}'; fix the template") from exc


def parse_template(name: str, path: Path, text: str) -> PromptTemplate:
    parts = _MARKER.split(text)
    # split() gives [before, 'system', body, 'user', body]
    if len(parts) != 5 or parts[1] != "system" or parts[3] != "user":
        raise UserError(f"{path}: expected a '=== system ===' line, then a '=== user ===' line; fix the template")
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return PromptTemplate(name, path, Template(parts[2].strip("\n")), Template(parts[4].strip("\n")), version)


def load_template(name: str, folder: Path | None = None) -> PromptTemplate:
    path = (folder or prompts_dir()) / f"{name}.txt"
    if not path.is_file():
        raise UserError(f"prompt template {path} is missing; restore {path.parent.name}/{name}.txt under prompts/ from the project")
    return parse_template(name, path, path.read_text("utf-8"))
