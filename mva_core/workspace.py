"""A workspace directory: `mva.sqlite`, `vectors/<method>/<value>/`, `exports/`, `workspace.json`.

`workspace.json` says what the workspace is about: the base model, the values (each with the scorer
that measures it), the weight bound C, the prompt set and the decoding config. Paths a user names
(exports, candidate names) are confined to the workspace.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import DecodingConfig, SearchSpace
from .models import DEFAULT_BASE
from .store import Store

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKSPACE = REPO_ROOT / "data" / "workspace"
DEMO_WORKSPACE = REPO_ROOT / "data" / "demo"
MANIFEST = "workspace.json"


class WorkspaceError(ValueError):
    """The workspace is missing, malformed, or a path would leave it."""


@dataclass
class ValueSpec:
    name: str  # the value, as shown to users (e.g. "warmth")
    scorer: str  # scorer registry spec that measures it (e.g. "warmth", "hf:Ray2333/gpt2-large-harmless-reward_model")


@dataclass
class Manifest:
    base: str = DEFAULT_BASE
    values: list[ValueSpec] = field(default_factory=list)
    C: float = 1.0
    prompts: str = "prompts/validation.jsonl"  # relative to the workspace
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "values": [vars(v) for v in self.values], "C": self.C, "prompts": self.prompts,
                "decoding": self.decoding.to_dict(), "description": self.description}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        return cls(base=d.get("base", DEFAULT_BASE), values=[ValueSpec(**v) for v in d.get("values", [])],
                   C=float(d.get("C", 1.0)), prompts=d.get("prompts", "prompts/validation.jsonl"),
                   decoding=DecodingConfig.from_dict(d.get("decoding", {})), description=d.get("description", ""))


class Workspace:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        if not (self.root / MANIFEST).is_file():
            raise WorkspaceError(
                f"{self.root} is not an MVA workspace (no {MANIFEST}); build one with "
                f"`python -m mva_core demo build --workspace {self.root}` or pass another --workspace"
            )
        self.manifest = Manifest.from_dict(json.loads((self.root / MANIFEST).read_text()))
        self.store = Store(self.root / "mva.sqlite")

    @classmethod
    def create(cls, root: str | Path, manifest: Manifest) -> "Workspace":
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        (root / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2))
        return cls(root)

    @property
    def value_names(self) -> list[str]:
        return [v.name for v in self.manifest.values]

    def space(self, kind: str = "extrapolation", step: float = 0.25) -> SearchSpace:
        return SearchSpace(n_values=len(self.manifest.values), C=self.manifest.C, step=step, kind=kind)  # type: ignore[arg-type]

    def methods(self) -> list[str]:
        """Methods that have a full set of value vectors (one dir per value) in this workspace."""
        vec = self.root / "vectors"
        if not vec.is_dir():
            return []
        return sorted(m.name for m in vec.iterdir()
                      if m.is_dir() and all((m / v / "adapter_config.json").is_file() for v in self.value_names))

    def vector_dirs(self, method: str) -> list[Path]:
        dirs = [self.root / "vectors" / method / v for v in self.value_names]
        missing = [d for d in dirs if not d.is_dir()]
        if missing:
            raise WorkspaceError(f"method {method!r} has no value vector at {missing[0]}; "
                                 f"methods with vectors here: {self.methods()}")
        return dirs

    def prompts(self) -> list[str]:
        from .data import load_prompts

        return load_prompts(self.root / self.manifest.prompts)

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


def open_workspace(root: str | Path | None = None) -> Workspace:
    """Open a workspace; the default one is copied from the shipped demo (data/demo) the first time."""
    import shutil

    path = Path(root) if root is not None else default_workspace()
    if not (path / MANIFEST).is_file() and path.resolve() == DEFAULT_WORKSPACE.resolve() and (DEMO_WORKSPACE / MANIFEST).is_file():
        shutil.copytree(DEMO_WORKSPACE, path, dirs_exist_ok=True)
    return Workspace(path)

