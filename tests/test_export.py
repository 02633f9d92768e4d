"""Exports reproduce the composition when loaded with plain peft / transformers; writes are atomic."""

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from mva_core.compose import WeightBatchedModel
from mva_core.atomic import MARKER
from mva_core.export import ExportError, atomic_dir, export_mergekit, export_peft
from mva_core.models import load_base
from mva_core.vectors import load_value_vectors
from tests.tiny import make_tiny_llama, make_value_vector


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    make_tiny_llama(root / "base")
    dirs = [make_value_vector(root / "base", root / "a", "a", seed=1, r=4, alpha=8),
            make_value_vector(root / "base", root / "b", "b", seed=2, r=2, alpha=16, targets=("q_proj", "o_proj"))]
    return load_base(str(root / "base")), load_value_vectors(dirs), root


def test_peft_export_equals_composition(setup, tmp_path):
    from peft import PeftModel

    base, vectors, root = setup
    w = [1.3, 0.6]
    out = export_peft(base, vectors, w, tmp_path / "adapter")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "base"), out).eval()
    ids = torch.randint(3, 400, (2, 10), generator=torch.Generator().manual_seed(0))
    want = WeightBatchedModel(base.model, vectors).logits(ids, np.array([w, w]))
    torch.testing.assert_close(model(ids).logits, want, atol=2e-5, rtol=1e-4)


def test_mergekit_recipe(setup, tmp_path):
    base, vectors, _ = setup
    recipe = yaml.safe_load((export_mergekit(base, vectors, [0.7, 1.0], tmp_path / "mk") / "mergekit.yaml").read_text())
    assert recipe["merge_method"] == "task_arithmetic" and recipe["parameters"] == {"normalize": False}
    assert [m["parameters"]["weight"] for m in recipe["models"]] == [0.7, 1.0]
    assert recipe["models"][0]["model"] == f"{base.path}+{vectors[0].path}"


def test_atomic_dir_never_leaves_partial_output(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.bin").write_text("x")
            raise RuntimeError("killed mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    target.mkdir()
    with pytest.raises(ExportError, match="--force"):
        with atomic_dir(target):
            pass
    with atomic_dir(target, force=True) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "new.txt"]  # ours: --force may replace it later


def test_export_a_candidate_of_another_prompt_set(tmp_path):
    """A candidate generated on a prompt set other than workspace.json's exports, with its scores z-scored
    against the base model on its own prompts (not refused as 'not in the workspace')."""
    import yaml

    from mva_core.export import export_candidate
    from mva_core.sweep import Evaluator, evaluate_base
    from tests.tiny import make_tiny_workspace

    ws = make_tiny_workspace(tmp_path)
    other = ["Name a color.", "Count to three."]
    evaluate_base(ws, prompts=other)
    cid = Evaluator(ws, "mva-no-hsic").on_prompts(other).evaluate([[0.5, 0.5]]).candidate_ids[0]
    out = export_candidate(ws, cid, "card", tmp_path / "card")
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])["mva"]
    assert card["candidate_id"] == cid and card["weights"] == {"warmth": 0.5, "brevity": 0.5}
    rows = ws.store.responses([cid])
    assert rows["prompt"].tolist() == other
    assert card["scores"]["brevity"]["raw"] == pytest.approx(rows["brevity"].mean())
