"""DPO-SeqT (DESIGN §1 table, the MVA paper's baseline): ONE vector trained by DPO on D_1, then continued on
D_2, …, each stage `config.max_steps` steps from the previous stage's adapter, with that stage's starting
model as the reference (L_DPO of that stage's data only, as sequential full-model DPO does). Stage k (from 0) uses seed `config.seed + k`; stage 0 is plain
`dpo` on D_1. The result is one model, used alone at weight 1."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..kinds import EACH
from ..preference_data import check_pairs
from .base import Datasets, MethodSettings, TrainingMethod, register_method
from .dpo import train_dpo_vector
from .mva import MVA_PAPER

SEQT_DIR = "seqt"


@register_method("dpo-seqt")
class DPOSeqT(TrainingMethod):
    """DPO-SeqT: one vector trained on each value's data in turn."""

    paper = MVA_PAPER  # a baseline row of the MVA paper
    description = "DPO-SeqT: one vector trained by DPO on D_1, then on D_2, …; used alone"
    kind = EACH

    def train_vectors(self, base_dir: str, datasets: Datasets, out_root: Path, config: TrainConfig,
                      base_fingerprint: str, settings: MethodSettings, *, progress: bool = True) -> list[dict[str, Any]]:
        """Train out_root/'seqt'/ (skipped when it holds a finished vector); stages live in a temp dir."""
        for value, pairs in datasets.items():
            check_pairs(pairs, source=f"value {value!r}")
        out = Path(out_root) / SEQT_DIR
        if (out / "adapter_config.json").is_file():
            return []
        values, summaries = list(datasets), []
        scratch = Path(tempfile.mkdtemp(prefix="mva-seqt-"))
        try:
            previous = None
            for k, value in enumerate(values):
                last = k == len(values) - 1
                stage = out if last else scratch / f"stage{k}-{value}"
                summaries.append(train_dpo_vector(
                    base_dir, datasets[value], SEQT_DIR, stage, replace(config, seed=config.seed + k),
                    base_fingerprint, method=self.name, progress=progress, init_adapter=previous,
                    extra_meta={"values": values, "stage": k, "stage_value": value, "paper": self.paper,
                                **({"stage_losses": [s["losses"] for s in summaries]} if last else {})}))
                previous = stage
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return summaries
