"""A workspace directory: `mva.sqlite`, `vectors/<method>/<value>/`, `exports/`, `workspace.json`.

`workspace.json` says what the workspace is about: the base model, the values (each with the scorer
that measures it), the weight bound C, the prompt set and the decoding config. Paths a user names
(exports, candidate names) are confined to the workspace.

`compared_methods()` lists the rows of a comparison the workspace's vectors give (DESIGN §1 method table):
each registered method's vector set and how its candidates are composed from it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .atomic import atomic_dir
from .errors import MVAError
from .config import ConfigError, DecodingConfig, Record, check_name
from .data import load_prompts, write_jsonl
from .kinds import EXTRAPOLATION, ComparedMethod, GridKind, SearchSpace
from .methods import available_methods, get_method
from .models import DEFAULT_BASE, load_base
from .scorers import check_scorer_spec, current_scorer_keys
from .store import Store
from .table import BASE_METHOD  # the base model's row: no method may take its name
from .vectors import ADAPTER_FILE, META_FILE, check_compatible, file_hash, load_value_vector

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKSPACE = REPO_ROOT / "data" / "workspace"
DEMO_WORKSPACE = REPO_ROOT / "data" / "demo"
MANIFEST = "workspace.json"


class WorkspaceError(MVAError, ValueError):
    """The workspace is missing, malformed, or a path would leave it."""


@dataclass
class ValueSpec(Record):
    """One value of the workspace and the scorer that measures it."""

    name: str = field(metadata={"help": "The value as shown to users (e.g. 'warmth'); also a directory name."})
    scorer: str = field(metadata={
        "help": "Scorer registry spec that measures it (e.g. 'warmth', 'hf:Ray2333/gpt2-large-harmless-reward_model')."})

    def __post_init__(self) -> None:
        self.check_types()
        check_name(self.name, "value name")
        if not self.scorer.strip():
            raise ConfigError(f"value {self.name!r}: scorer is empty; name a registry scorer or hf:MODEL")


@dataclass
class Manifest(Record):
    """workspace.json: what the workspace is about. Validated on load; a bad field is named with the fix."""

    base: str = field(default=DEFAULT_BASE, metadata={"help": "Hub id, model dir or .gguf file of the base model."})
    values: list[ValueSpec] = field(default_factory=list, metadata={"help": "The values, in weight order."})
    C: float = field(default=1.0, metadata={"help": "Upper bound of every weight, > 0 (MVA Eq.15; paper: 1)."})
    prompts: str = field(default="prompts/validation.jsonl", metadata={"help": "Prompt set, relative to the workspace."})
    decoding: DecodingConfig = field(default_factory=DecodingConfig, metadata={"help": "How responses are generated."})
    description: str = field(default="", metadata={"help": "Shown in the app."})

    def __post_init__(self) -> None:
        self.check_types()
        if not self.base.strip():
            raise ConfigError("base is empty; name the base model (hub id, model dir or .gguf file)")
        if not all(isinstance(v, ValueSpec) for v in self.values):
            raise ConfigError("values must be a list of {\"name\": ..., \"scorer\": ...} objects")
        names = [v.name for v in self.values]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"value names {twice} appear twice; give each value its own name")
        if not (math.isfinite(self.C) and self.C > 0):
            raise ConfigError(f"C = {self.C}: the weight bound must be a positive finite number (paper: 1)")
        if not self.prompts.strip():
            raise ConfigError("prompts is empty; name a JSONL prompt file, e.g. prompts/validation.jsonl")

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "values": [v.to_dict() for v in self.values], "C": self.C, "prompts": self.prompts,
                "decoding": self.decoding.to_dict(), "description": self.description}

    @classmethod
    def from_dict(cls, d: Any) -> "Manifest":
        if not isinstance(d, dict):
            raise ConfigError(f"the top level is a {type(d).__name__}; it must be a JSON object with base, values, C, ...")
        values, decoding = d.get("values", []), d.get("decoding", {})
        if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
            raise ConfigError(f"values = {values!r} must be a list of {{\"name\": ..., \"scorer\": ...}} objects")
        if not isinstance(decoding, dict):
            raise ConfigError(f"decoding = {decoding!r} must be an object, e.g. {{\"max_new_tokens\": 48}}")
        known = {"base", "values", "C", "prompts", "decoding", "description"}
        if set(d) - known:
            raise ConfigError(f"unknown field(s) {sorted(set(d) - known)}; valid fields are {sorted(known)}")
        rest = {k: d[k] for k in ("base", "C", "prompts", "description") if k in d}
        return cls(values=[ValueSpec.from_dict(v) for v in values], decoding=DecodingConfig.from_dict(decoding), **rest)


def _unreadable(path: Path, exc: OSError) -> WorkspaceError:
    """A workspace this process may not read: a permission to fix, not a location to write elsewhere."""
    return WorkspaceError(f"cannot read {path} ({exc.strerror or exc}); make the workspace readable by this user "
                          "(e.g. chmod -R u+rX on it) or run as its owner")


def _has_manifest(root: Path) -> bool:
    try:
        return (root / MANIFEST).is_file()
    except PermissionError as exc:  # a directory this user may not enter
        raise _unreadable(root, exc) from None


def load_manifest(path: Path) -> Manifest:
    """workspace.json, validated; every problem raises WorkspaceError naming the file, the field and the fix."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except PermissionError as exc:
        raise _unreadable(path, exc) from None
    except json.JSONDecodeError as exc:
        raise WorkspaceError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                             "fix the file or rebuild the workspace") from None
    except UnicodeDecodeError as exc:
        raise WorkspaceError(f"{path}: bytes are not UTF-8 (at byte {exc.start}); re-save it as UTF-8") from None
    try:
        return Manifest.from_dict(data)
    except (ConfigError, TypeError) as exc:
        raise WorkspaceError(f"{path}: {exc}") from None


class Workspace:
    def __init__(self, root: str | Path, read_only: bool = False):
        self.root = Path(root).resolve()
        if not _has_manifest(self.root):
            raise WorkspaceError(
                f"{self.root} is not an MVA workspace (no {MANIFEST}); build one with "
                f"`python -m mva_core demo build --workspace {self.root}` or pass another --workspace"
            )
        self.manifest = load_manifest(self.root / MANIFEST)
        self.store = Store(self.root / "mva.sqlite", read_only=read_only, current_keys=current_scorer_keys)

    @classmethod
    def create(cls, root: str | Path, manifest: Manifest) -> "Workspace":
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        (root / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2))
        return cls(root)

    @property
    def value_names(self) -> list[str]:
        return [v.name for v in self.manifest.values]

    def space(self, kind: str | GridKind = EXTRAPOLATION, step: float = 0.25, C: float | None = None) -> SearchSpace:
        """The weight space S (MVA Eq.15) of the grid kind `kind` (or its name) with bound `C` (default
        workspace.json's)."""
        return SearchSpace(n_values=len(self.manifest.values), C=self.manifest.C if C is None else C, step=step,
                           kind=kind)  # type: ignore[arg-type]  # a name is resolved by SearchSpace

    def _method_dirs(self) -> list[Path]:
        """vectors/<method>/ dirs, sorted by name; a `base` dir is none (that name is the base model's row)."""
        vec = self.root / "vectors"
        return sorted((p for p in vec.iterdir() if p.is_dir() and p.name != BASE_METHOD),
                      key=lambda p: p.name) if vec.is_dir() else []

    def methods(self) -> list[str]:
        """Methods that have a full set of value vectors (one dir per value) in this workspace."""
        return [m.name for m in self._method_dirs()
                if all((m / v / "adapter_config.json").is_file() for v in self.value_names)]

    def adapter_dirs(self, name: str) -> list[Path]:
        """Every value-vector dir under vectors/<name>/ (sorted by name)."""
        d = self.root / "vectors" / name
        return sorted(p for p in d.iterdir() if (p / "adapter_config.json").is_file()) if d.is_dir() else []

    def compared_methods(self) -> list[ComparedMethod]:
        """The comparison rows this workspace's vectors give (DESIGN §1 table), grid methods first.

        A registered method reads vectors/<its name>/ if present, else vectors/<vectors_from>/ (soup and dpo
        read mva-no-hsic's); `vertices` gives one row per value ("dpo-<value>"). A vector dir whose name is not
        a registered method (a run of one, e.g. `mva-alpha1` or `mi-epo-bw10`: `run_method`) is a row of that name
        with the kind of the method its mva_vector.json records; with no such record, an extrapolation grid.
        """
        on_disk = [p.name for p in self._method_dirs()]
        grid_sets = set(self.methods())
        rows: list[ComparedMethod] = []
        for name in [*available_methods(), *[m for m in on_disk if m not in available_methods()]]:
            method = get_method(name) if name in available_methods() else None
            recorded = None if method else self.run_method(name)
            kind = method.kind if method else (get_method(recorded).kind if recorded else EXTRAPOLATION)
            source = name if name in on_disk or method is None else method.vectors_from
            if not kind.one_vector_per_value:
                dirs = tuple(self.adapter_dirs(source))
            elif source in grid_sets:
                dirs = tuple(self.vector_dirs(source))
            else:
                continue
            if not dirs:
                continue
            hashes = tuple(file_hash(d / ADAPTER_FILE if (d / ADAPTER_FILE).is_file() else d / "adapter_model.bin")
                           for d in dirs)
            rows += kind.rows(name, dirs, hashes, self.value_names)  # vertices: one per value ("dpo-<value>")
        return sorted(rows, key=lambda m: (m.kind.order, m.name))

    def run_method(self, name: str) -> str | None:
        """The registered method that trained the vectors of vectors/<name>/ (the `method` its first vector dir's
        mva_vector.json records), or None when none is recorded or it is not registered here."""
        for d in self.adapter_dirs(name):
            try:
                recorded = json.loads((d / META_FILE).read_text()).get("method")
            except (OSError, ValueError):
                continue
            return recorded if isinstance(recorded, str) and recorded in available_methods() else None
        return None

    def vector_index(self) -> dict[str, Path]:
        """hash -> dir of every value vector under vectors/ (how a stored candidate finds its vectors)."""
        return {h: d for m in self.compared_methods() for d, h in zip(m.vector_dirs, m.vector_hashes)}

    def compared_method(self, name: str) -> ComparedMethod:
        rows = {m.name: m for m in self.compared_methods()}
        if name not in rows:
            raise WorkspaceError(f"method {name!r} has no value vectors in {self.root}; methods here: {sorted(rows)}; "
                                 f"train it with `python -m mva_core train --method {name} ...`")
        return rows[name]

    def vector_dirs(self, method: str) -> list[Path]:
        dirs = [self.root / "vectors" / method / v for v in self.value_names]
        missing = [d for d in dirs if not d.is_dir()]
        if missing:
            raise WorkspaceError(f"method {method!r} has no value vector at {missing[0]}; "
                                 f"methods with vectors here: {self.methods()}")
        return dirs

    def prompts(self, path: str | Path | None = None) -> list[str]:
        """The prompts of `path` (one of `prompt_sets()`), by default workspace.json's prompt set."""
        return load_prompts(self.root / self.manifest.prompts if path is None else path)

    def prompt_sets(self) -> dict[str, Path]:
        """Label -> file of the prompt sets a sweep can use: workspace.json's first, then the workspace's other
        prompts/*.jsonl, then the shipped data/prompts/*.jsonl. Candidates are keyed by their prompts' content,
        so a sweep on another set never answers from, or overwrites, the default set's results."""
        sets = {f"{self.manifest.prompts} (workspace.json)": self.root / self.manifest.prompts}
        shipped = REPO_ROOT / "data" / "prompts"
        for folder, tag in [(self.root / "prompts", "workspace"), (shipped, "shipped")]:
            for f in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
                if f.resolve() not in {p.resolve() for p in sets.values()}:
                    rel = f.relative_to(self.root) if tag == "workspace" else f.relative_to(REPO_ROOT)
                    sets[f"{rel} ({tag})"] = f
        return sets

    def inside(self, *parts: str) -> Path:
        """A path under the workspace; names that would escape it (`../..`, absolute) are refused."""
        path = self.root.joinpath(*parts).resolve()
        if path != self.root and self.root not in path.parents:
            raise WorkspaceError(f"{'/'.join(parts)!r} leaves the workspace {self.root}; use a plain name")
        return path


def default_workspace() -> Path:
    """$MVA_WORKSPACE, else data/workspace (initialised from the shipped demo on first use)."""
    env = os.environ.get("MVA_WORKSPACE")
    return Path(env) if env else DEFAULT_WORKSPACE


def open_workspace(root: str | Path | None = None, read_only: bool = False) -> Workspace:
    """Open a workspace; the default one is copied from the shipped demo (data/demo) the first time it is
    opened to be written. A read (`read_only`) of a default workspace not made yet reads the shipped demo in
    place, read-only, and copies nothing. (Any other workspace is opened as it is: reading its store never
    writes it, see Store._open.)"""
    path = Path(root) if root is not None else default_workspace()
    if not _has_manifest(path) and path.resolve() == DEFAULT_WORKSPACE.resolve() and (DEMO_WORKSPACE / MANIFEST).is_file():
        if read_only:
            return Workspace(DEMO_WORKSPACE, read_only=True)
        shutil.copytree(DEMO_WORKSPACE, path, dirs_exist_ok=True)
    return Workspace(path)



# ---- A workspace from what a user already has (`python -m mva_core init`) ----

# Manifest defaults of a preset; `--value` and the other flags override them.
PRESETS: dict[str, dict[str, Any]] = {
    # The MVA paper's HH-RLHF setup: the Ray2333 GPT-2 reward models (HH-RLHF text), 200 new tokens, C = 1.
    "paper-hh": {"values": [{"name": "helpful", "scorer": "hf:Ray2333/gpt2-large-helpful-reward_model"},
                            {"name": "harmless", "scorer": "hf:Ray2333/gpt2-large-harmless-reward_model"}],
                 "C": 1.0, "decoding": {"max_new_tokens": 200}},
}


def init_workspace(root: str | Path, base: str, values: Sequence[ValueSpec] = (),
                   vectors: dict[str, dict[str, Path]] | None = None, prompts: str | Path | None = None,
                   preset: str | None = None, check_base: bool = True) -> "Workspace":
    """A new workspace at `root` (missing or empty) from a base model, values with their scorers, and value
    vectors a user already has: `vectors[method][value]` = a PEFT LoRA adapter dir (our metadata optional).

    Each adapter is loaded and checked like any value vector (its tensors, and with `check_base` its shapes and
    fingerprint against the base); it is copied to vectors/<method>/<value>/ with an mva_vector.json naming the
    base as the user gave it. The workspace is built aside and renamed into place: nothing half-made remains.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root} is a file; `init` makes a new workspace directory; choose a path that does "
                             "not exist yet (or an empty directory)")
    if (root / MANIFEST).exists() or (root.is_dir() and any(root.iterdir())):
        raise WorkspaceError(f"{root} already exists and is not empty; `init` never writes over files; choose a "
                             "new directory")
    if preset is not None and preset not in PRESETS:
        raise WorkspaceError(f"preset {preset!r} is unknown; choose one of {sorted(PRESETS)}")
    fields_ = dict(PRESETS.get(preset or "", {}))
    if values:
        fields_["values"] = [v.to_dict() for v in values]
    manifest = Manifest.from_dict({**fields_, "base": base, "description": f"made by `init` from {base}"})
    if not manifest.values:
        raise WorkspaceError("no values: name each with --value NAME=SCORER (or use --preset paper-hh)")
    for v in manifest.values:
        check_scorer_spec(v.scorer)
    vectors = vectors or {}
    loaded = {}
    names = [v.name for v in manifest.values]
    for method, by_value in vectors.items():
        check_name(method, "method name")
        if method == BASE_METHOD:
            raise WorkspaceError(f"--vectors {method}: the method name {BASE_METHOD!r} is reserved for the base model "
                                 "(every comparison's reference row); name the method otherwise, e.g. mva")
        unknown = sorted(set(by_value) - set(names))
        if unknown:
            raise WorkspaceError(f"--vectors {method}: {unknown} are not values of this workspace "
                                 f"({names}); declare them with --value")
        lacking = [n for n in names if n not in by_value]
        if lacking:
            raise WorkspaceError(f"--vectors {method}: no value vector for {lacking}; a method needs one per value "
                                 f"of the workspace ({names}), e.g. --vectors {method}="
                                 + ",".join(f"{n}:DIR" for n in names))
        loaded[method] = {value: load_value_vector(path) for value, path in by_value.items()}
    fingerprint = ""
    if check_base and loaded:
        model = load_base(base)
        fingerprint = model.fingerprint
        for method, by_value in loaded.items():
            check_compatible(list(by_value.values()), model.model, model.fingerprint)
    prompt_rows = [{"prompt": p} for p in load_prompts(prompts if prompts is not None else
                                                        REPO_ROOT / "data" / "prompts" / "validation.jsonl")]
    with atomic_dir(root, force=root.is_dir(), kind="workspace") as tmp:  # an existing dir here is empty
        for method, by_value in vectors.items():
            for value, src in by_value.items():
                dst = tmp / "vectors" / method / value
                dst.mkdir(parents=True)
                for name in ("adapter_config.json", ADAPTER_FILE):
                    shutil.copy2(Path(src) / name, dst / name)
                meta_file = Path(src) / META_FILE
                meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
                meta.update(value=value, method=method, base_model=base, imported_from=str(src),
                            base_fingerprint=meta.get("base_fingerprint") or fingerprint)
                (dst / META_FILE).write_text(json.dumps(meta, indent=2))
        write_jsonl(tmp / manifest.prompts, prompt_rows)
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2))
    return Workspace(root)
