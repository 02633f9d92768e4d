"""Prompt sets and preference data as JSONL (the trl convention), read with line-numbered errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .errors import MVAError


class DataFileError(MVAError, ValueError):
    """A JSONL file is unreadable or a record is malformed; the message names the file and line."""


def read_jsonl(path: str | Path, required: Sequence[str]) -> list[dict[str, Any]]:
    """Records of a JSONL file; every record must have non-empty string fields `required`."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path} does not exist; pass a JSONL file with fields {list(required)}")
    raw = path.read_bytes()
    records = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataFileError(f"{path}:{lineno}: bytes are not UTF-8 (at byte {exc.start}); re-save the file as UTF-8") from None
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{path}:{lineno}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(rec, dict):
            raise DataFileError(f"{path}:{lineno}: expected a JSON object with fields {list(required)}")
        for key in required:
            if key not in rec:
                raise DataFileError(f"{path}:{lineno}: missing field {key!r}; each record needs {list(required)}")
            if not isinstance(rec[key], str) or not rec[key].strip():
                raise DataFileError(f"{path}:{lineno}: field {key!r} is empty or not a string; give it text")
        records.append(rec)
    if not records:
        raise DataFileError(f"{path} holds no records; add one JSON object per line")
    return records


def load_prompts(path: str | Path) -> list[str]:
    """Prompts JSONL: one {"prompt": ...} per line."""
    return [r["prompt"] for r in read_jsonl(path, ["prompt"])]


def write_jsonl(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)
