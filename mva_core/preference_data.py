"""The paper's preference datasets as trl-style pairs (`prompt`, `chosen`, `rejected`), split 94 / 1 / 5.

Two record schemas, read from the hub by id (`datasets.load_dataset`) or from a local JSONL of the same records:

- `hh` — Anthropic/hh-rlhf (data_dir `helpful-base`, `harmless-base`, …): `chosen` and `rejected` are whole
  transcripts "\\n\\nHuman: … \\n\\nAssistant: …". The pair's prompt is the transcript before the last
  "\\n\\nAssistant:", the responses are the two final assistant turns. A pair whose two transcripts differ
  before that point is not a preference over one context: it is skipped and counted.
- `saferlhf` — PKU-Alignment/PKU-SafeRLHF (BeaverTails-style) records `prompt, response_0, response_1,
  better_response_id, safer_response_id`: the `helpful` set prefers `better_response_id`, the `harmless` set
  `safer_response_id`.

Split (the paper's): 5 % test, 1 % validation, the rest train; sizes are floor(n · fraction), the assignment a
seeded permutation, and each split keeps the source order.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from .atomic import PREFERENCE_DATA, atomic_dir
from .errors import MVAError
from .data import DataFileError, read_jsonl, write_jsonl

Format = Literal["hh", "saferlhf"]
Objective = Literal["helpful", "harmless"]
FORMATS: tuple[str, ...] = ("hh", "saferlhf")
OBJECTIVES: dict[str, str] = {"helpful": "better_response_id", "harmless": "safer_response_id"}
SPLITS: tuple[str, ...] = ("train", "validation", "test")
TEST_FRACTION, VALIDATION_FRACTION = 0.05, 0.01  # the paper's split

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
HH_HUB_ID = "Anthropic/hh-rlhf"
SAFERLHF_HUB_ID = "PKU-Alignment/PKU-SafeRLHF"
SAFERLHF_FIELDS = ("prompt", "response_0", "response_1", "better_response_id", "safer_response_id")


PAIR_FIELDS = ("prompt", "chosen", "rejected")


class PreferenceDataError(DataFileError):
    """Preference pairs are unreadable or malformed; the message names the file and line (or the pair)."""


class PreferenceSourceError(MVAError, ValueError):
    """A preference data source is unknown, unreachable or holds records of another schema."""


@dataclass
class ParsedPairs:
    """Pairs parsed from `n_records` source records; `skipped` counts the records left out, by reason."""

    pairs: list[dict[str, str]]
    n_records: int
    skipped: dict[str, int] = field(default_factory=dict)
    source: str = ""


# ---- Pairs as training reads them ----

def load_preference_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Pairs from a trl-style JSONL (`prompt`, `chosen`, `rejected`, all non-empty strings; extra fields kept).

    Raises PreferenceDataError naming the file, the 1-based line and the fix.
    """
    try:
        records = read_jsonl(path, PAIR_FIELDS)
    except DataFileError as exc:
        raise PreferenceDataError(str(exc)) from None
    check_pairs(records, source=str(path))
    return records


def check_pairs(pairs: Sequence[dict[str, Any]], source: str = "pairs") -> None:
    """Every pair has non-empty string prompt/chosen/rejected and chosen != rejected."""
    if not pairs:
        raise PreferenceDataError(f"{source}: no preference pairs; give at least one {{prompt, chosen, rejected}} record")
    for i, pair in enumerate(pairs, start=1):
        for key in PAIR_FIELDS:
            if not isinstance(pair.get(key), str) or not pair[key].strip():
                raise PreferenceDataError(f"{source}: pair {i} has no text in field {key!r}; "
                                          f"every pair needs non-empty strings {list(PAIR_FIELDS)}")
        if pair["chosen"] == pair["rejected"]:
            # An identical pair has zero DPO gradient: it is a data bug (e.g. a scoring tie), not a preference.
            raise PreferenceDataError(f"{source}: pair {i} has identical chosen and rejected text; remove it")


def pairs_sha256(pairs: Sequence[dict[str, Any]]) -> str:
    """sha256 of the canonical JSON of the pairs' prompt/chosen/rejected (file formatting does not matter)."""
    blob = json.dumps([[p[k] for k in PAIR_FIELDS] for p in pairs], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ---- Anthropic/hh-rlhf ----

def split_transcript(transcript: str) -> tuple[str, str] | None:
    """(context, final assistant turn) of an hh-rlhf transcript: the text before / after its last
    "\\n\\nAssistant:". None if it has no assistant turn."""
    cut = transcript.rfind(ASSISTANT)
    if cut < 0:
        return None
    return transcript[:cut], transcript[cut + len(ASSISTANT):].strip()


def render_context(context: str) -> str:
    """The prompt text for an hh-rlhf context (everything before the final "\\n\\nAssistant:").

    One human turn: just that turn's text, so the chat template frames it like any other prompt. Several
    turns: the transcript as plain text, "Human: …\\n\\nAssistant: …\\n\\nHuman: …" (the markers kept, one
    blank line between turns), given to the chat template as a single user message.
    """
    text = context.strip()
    if context.count(HUMAN) == 1 and ASSISTANT not in context and text.startswith(HUMAN.strip()):
        return text[len(HUMAN.strip()):].strip()
    return text


def parse_hh(records: Iterable[dict[str, Any]], source: str = "hh-rlhf") -> ParsedPairs:
    """Pairs from hh-rlhf records (`chosen`, `rejected` transcripts); records that are not a preference over
    one shared context are skipped: `prefix_differs`, `no_assistant_turn`, `empty_response`, `same_response`."""
    pairs, skipped, n = [], Counter(), 0
    for i, rec in enumerate(records, start=1):
        n += 1
        for key in ("chosen", "rejected"):
            if not isinstance(rec.get(key), str):
                raise PreferenceSourceError(f"{source}: record {i} has no string field {key!r}; hh-rlhf records "
                                            "hold 'chosen' and 'rejected' transcripts (use --format saferlhf for "
                                            f"records with {list(SAFERLHF_FIELDS)})")
        chosen, rejected = split_transcript(rec["chosen"]), split_transcript(rec["rejected"])
        if chosen is None or rejected is None:
            skipped["no_assistant_turn"] += 1
        elif chosen[0] != rejected[0]:
            skipped["prefix_differs"] += 1
        elif not chosen[1] or not rejected[1] or not render_context(chosen[0]):
            skipped["empty_response"] += 1
        elif chosen[1] == rejected[1]:
            skipped["same_response"] += 1  # zero DPO gradient, and check_pairs refuses it
        else:
            pairs.append({"prompt": render_context(chosen[0]), "chosen": chosen[1], "rejected": rejected[1]})
    return ParsedPairs(pairs, n, dict(sorted(skipped.items())), source)


# ---- PKU-SafeRLHF / BeaverTails ----

def parse_saferlhf(records: Iterable[dict[str, Any]], objective: Objective,
                   source: str = "saferlhf") -> ParsedPairs:
    """Pairs from PKU-SafeRLHF records: `helpful` prefers response `better_response_id`, `harmless` response
    `safer_response_id`. Records with an empty prompt or response, or two equal responses, are skipped."""
    if objective not in OBJECTIVES:
        raise PreferenceSourceError(f"objective={objective!r}: choose one of {sorted(OBJECTIVES)}")
    id_field = OBJECTIVES[objective]
    pairs, skipped, n = [], Counter(), 0
    for i, rec in enumerate(records, start=1):
        n += 1
        missing = [k for k in SAFERLHF_FIELDS if k not in rec]
        if missing:
            raise PreferenceSourceError(f"{source}: record {i} lacks {missing}; PKU-SafeRLHF records hold "
                                        f"{list(SAFERLHF_FIELDS)} (use --format hh for chosen/rejected transcripts)")
        best = rec[id_field]
        if isinstance(best, bool) or best not in (0, 1):
            raise PreferenceSourceError(f"{source}: record {i} has {id_field}={best!r}; it must be 0 or 1")
        texts = [rec["response_0"], rec["response_1"], rec["prompt"]]
        if not all(isinstance(t, str) and t.strip() for t in texts):
            skipped["empty_text"] += 1
        elif rec["response_0"].strip() == rec["response_1"].strip():
            skipped["same_response"] += 1
        else:
            best = int(best)
            pairs.append({"prompt": rec["prompt"].strip(), "chosen": rec[f"response_{best}"].strip(),
                          "rejected": rec[f"response_{1 - best}"].strip()})
    return ParsedPairs(pairs, n, dict(sorted(skipped.items())), source)


# ---- Split ----

def split_sizes(n: int, test_fraction: float = TEST_FRACTION,
                validation_fraction: float = VALIDATION_FRACTION) -> dict[str, int]:
    """{train, validation, test} sizes for n pairs: floor(n · fraction) for test and validation, the rest train."""
    if not (0 <= test_fraction and 0 <= validation_fraction and test_fraction + validation_fraction < 1):
        raise PreferenceSourceError(f"test_fraction={test_fraction}, validation_fraction={validation_fraction}: "
                                    "each must be >= 0 and together < 1")
    n_test, n_val = math.floor(n * test_fraction), math.floor(n * validation_fraction)
    return {"train": n - n_test - n_val, "validation": n_val, "test": n_test}


def split_pairs(pairs: Sequence[dict[str, Any]], seed: int = 0, test_fraction: float = TEST_FRACTION,
                validation_fraction: float = VALIDATION_FRACTION) -> dict[str, list[dict[str, Any]]]:
    """{train, validation, test}: a seeded permutation assigns pairs to splits; each split keeps source order."""
    sizes = split_sizes(len(pairs), test_fraction, validation_fraction)
    order = np.random.default_rng(seed).permutation(len(pairs))
    bounds = {"test": order[:sizes["test"]], "validation": order[sizes["test"]:sizes["test"] + sizes["validation"]],
              "train": order[sizes["test"] + sizes["validation"]:]}
    return {name: [pairs[i] for i in sorted(bounds[name].tolist())] for name in SPLITS}


# ---- Sources ----

def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a local JSONL file in either schema (checked by the parser, not here)."""
    try:
        return read_jsonl(path, [])
    except DataFileError as exc:
        raise PreferenceSourceError(str(exc)) from None


def hub_records(hub_id: str, data_dir: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    """All rows of a hub dataset, its splits concatenated in the order the hub lists them (train, then test):
    the paper's split is made afresh over them."""
    import datasets  # heavy optional dependency: loaded only to read from the hub

    try:
        ds = datasets.load_dataset(hub_id, name, data_dir=data_dir)
    except Exception as exc:  # offline, unknown id, no such data_dir: datasets raises many kinds
        where = hub_id + (f" (data_dir {data_dir!r})" if data_dir else "")
        raise PreferenceSourceError(f"could not load {where} from the hub ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''}); without network access, "
                                    "save its records as JSONL elsewhere and pass that file with --format") from None
    splits = ds.values() if isinstance(ds, datasets.DatasetDict) else [ds]
    return [row for split in splits for row in split]


def load_source(source: str, fmt: Format | None = None, objective: Objective | None = None) -> ParsedPairs:
    """Parsed pairs from `source`: `hh-rlhf:<data_dir>` (e.g. helpful-base, harmless-base),
    `saferlhf:helpful|harmless`, or a local JSONL file with `fmt` (and `objective` for saferlhf)."""
    kind, sep, rest = source.partition(":")
    if sep and kind == "hh-rlhf" and not Path(source).exists():
        if not rest:
            raise PreferenceSourceError("hh-rlhf needs a data_dir: write hh-rlhf:helpful-base or hh-rlhf:harmless-base")
        return parse_hh(hub_records(HH_HUB_ID, data_dir=rest), source=f"{HH_HUB_ID}/{rest}")
    if sep and kind == "saferlhf" and not Path(source).exists():
        if rest not in OBJECTIVES:
            raise PreferenceSourceError(f"{source!r}: write saferlhf:helpful or saferlhf:harmless")
        return parse_saferlhf(hub_records(SAFERLHF_HUB_ID), rest, source=SAFERLHF_HUB_ID)  # type: ignore[arg-type]
    path = Path(source)
    if path.suffix != ".jsonl":
        raise PreferenceSourceError(f"source {source!r} is neither hh-rlhf:<data_dir>, saferlhf:helpful|harmless "
                                    "nor a .jsonl file; give one of those")
    if fmt not in FORMATS:
        raise PreferenceSourceError(f"{path}: say which schema its records have with --format {'|'.join(FORMATS)}")
    records = read_records(path)
    if fmt == "hh":
        return parse_hh(records, source=str(path))
    if objective not in OBJECTIVES:
        raise PreferenceSourceError(f"{path}: saferlhf records hold two preferences; choose one with "
                                    f"--objective {'|'.join(OBJECTIVES)}")
    return parse_saferlhf(records, objective, source=str(path))


def write_splits(parsed: ParsedPairs, out_dir: str | Path, seed: int = 0, force: bool = False) -> dict[str, int]:
    """Write out_dir/{train,validation,test}.jsonl (prompt, chosen, rejected) in one rename; line counts.

    An existing `out_dir` is refused unless `force`."""
    if not parsed.pairs:
        raise PreferenceSourceError(f"{parsed.source}: no usable pairs in {parsed.n_records} records "
                                    f"(skipped: {parsed.skipped}); check --format")
    splits = split_pairs(parsed.pairs, seed=seed)
    with atomic_dir(out_dir, force=force, kind=PREFERENCE_DATA) as tmp:
        for name, rows in splits.items():
            write_jsonl(tmp / f"{name}.jsonl", [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    return {name: len(rows) for name, rows in splits.items()}
