"""MVA Eq.15 composition: merged == weight-batched == a reference built independently in the test."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from mva_core.compose import WeightBatchedModel, merge, row_weights
from mva_core.vectors import VectorError, load_value_vector, load_value_vectors
from tests.tiny import make_tiny_llama, make_value_vector

TOL = dict(atol=2e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    make_tiny_llama(root / "base")
    dirs = [
        make_value_vector(root / "base", root / "help", "help", seed=1, r=4, alpha=8),
        make_value_vector(root / "base", root / "harm", "harm", seed=2, r=2, alpha=16, targets=("q_proj", "o_proj")),
        make_value_vector(root / "base", root / "safe", "safe", seed=3, r=8, alpha=8, targets=("v_proj", "up_proj")),
    ]
    return root, dirs


def reference_model(base_dir, adapter_dirs, weights, alphas_over_r):
    """W + Σ w_i (α_i/r_i) B_i A_i, computed here from the raw safetensors, not through mva_core."""
    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    sd = model.state_dict()
    for w, d, scale in zip(weights, adapter_dirs, alphas_over_r):
        t = load_file(str(d / "adapter_model.safetensors"))
        for key in t:
            if key.endswith("lora_A.weight"):
                module = key[len("base_model.model."):-len(".lora_A.weight")]
                B = t[key.replace("lora_A", "lora_B")]
                sd[module + ".weight"] += w * scale * (B.double() @ t[key].double()).float()
    model.load_state_dict(sd)
    return model


WEIGHT_CASES = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.7, 0.4, 0.0), (0.3, 2.5, 1.0), (1.0, 1.0, 1.0)]


def test_merged_and_weight_batched_match_reference(tiny):
    root, dirs = tiny
    base = AutoModelForCausalLM.from_pretrained(root / "base").eval()
    vectors = load_value_vectors(dirs)
    scales = [8 / 4, 16 / 2, 8 / 8]
    ids = torch.randint(3, 400, (len(WEIGHT_CASES), 12), generator=torch.Generator().manual_seed(0))
    wb = WeightBatchedModel(base, vectors)
    batched = wb.logits(ids, np.array(WEIGHT_CASES))  # every row its own candidate, in one call
    for b, w in enumerate(WEIGHT_CASES):
        ref = reference_model(root / "base", dirs, w, scales)(ids[b:b + 1]).logits
        merged = merge(base, vectors, w)(ids[b:b + 1]).logits
        torch.testing.assert_close(merged, ref, **TOL)
        torch.testing.assert_close(batched[b:b + 1], ref, **TOL)
    # Weight 0 everywhere is the base model itself, and the adapters actually change the output.
    torch.testing.assert_close(batched[0:1], base(ids[0:1]).logits, **TOL)
    assert (batched[2] - batched[0]).abs().max() > 1e-3


def test_two_value_case_and_peft_agreement(tiny):
    """A single vector at weight 1 equals plain peft's PeftModel; two values mix as the sum."""
    from peft import PeftModel

    root, dirs = tiny
    base = AutoModelForCausalLM.from_pretrained(root / "base").eval()
    ids = torch.randint(3, 400, (2, 9), generator=torch.Generator().manual_seed(1))
    peft_logits = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "base"), dirs[0]).eval()(ids).logits
    vectors = load_value_vectors(dirs[:2])
    ours = WeightBatchedModel(base, vectors).logits(ids, np.array([[1.0, 0.0], [1.0, 0.0]]))
    torch.testing.assert_close(ours, peft_logits, **TOL)


def test_base_model_is_never_modified(tiny):
    root, dirs = tiny
    base = AutoModelForCausalLM.from_pretrained(root / "base").eval()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    vectors = load_value_vectors(dirs)
    merge(base, vectors, [2.0, 1.0, 0.5])
    wb = WeightBatchedModel(base, vectors)
    wb.logits(torch.ones(1, 4, dtype=torch.long), np.array([[1.0, 1.0, 1.0]]))
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert type(base.get_submodule("model.layers.0.self_attn.q_proj")) is torch.nn.Linear


def test_row_weights_are_per_context(tiny):
    """Weights set in one thread are invisible to another: no shared scaling state."""
    import threading

    root, dirs = tiny
    base = AutoModelForCausalLM.from_pretrained(root / "base").eval()
    wb = WeightBatchedModel(base, load_value_vectors(dirs[:1]))
    ids = torch.randint(3, 400, (1, 6), generator=torch.Generator().manual_seed(2))
    errors = []

    def other_thread():
        try:
            wb.model(ids)
        except RuntimeError as exc:
            errors.append(str(exc))

    with row_weights(np.array([[1.0]])):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert errors and "row_weights" in errors[0]


def test_shape_mismatch_names_the_tensor(tiny, tmp_path):
    root, dirs = tiny
    make_tiny_llama(tmp_path / "other", seed=5, vocab_size=400)
    # A base with a different hidden size: same module names, other shapes.
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=400, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "wide")
    odd = make_value_vector(tmp_path / "wide", tmp_path / "odd", "odd", seed=4)
    with pytest.raises(VectorError, match=r"tensor model\.layers\.0\.mlp\.down_proj: .*\(48, 64\)"):
        load_value_vectors([dirs[0], odd])
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    with pytest.raises(VectorError, match=r"tensor model\.layers\.0\.mlp\.down_proj: value vector .odd. expects a linear layer of shape \(48, 64\)"):
        WeightBatchedModel(base, [load_value_vector(odd)])


def test_vectors_of_another_base_are_refused(tiny, tmp_path):
    root, dirs = tiny
    make_tiny_llama(tmp_path / "other", seed=5)  # same shapes, different weights
    odd = make_value_vector(tmp_path / "other", tmp_path / "odd", "odd", seed=4)
    with pytest.raises(VectorError, match="different base models"):
        load_value_vectors([dirs[0], odd])


def test_adapter_hash_is_read_once_per_size_and_mtime(tmp_path):
    """Issue 14 item 6: a file whose size and mtime are unchanged is not read again (its bytes are swapped here
    behind the cache's back, keeping both: the cached hash proves no read); a new mtime is read anew."""
    import hashlib
    import os

    from mva_core.vectors import file_hash

    f = tmp_path / "adapter_model.safetensors"
    f.write_bytes(b"A" * 1000)
    first = file_hash(f)
    assert first == hashlib.sha256(b"A" * 1000).hexdigest()[:16]
    stat = f.stat()
    f.write_bytes(b"B" * 1000)
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_hash(f) == first  # answered from the cache: the file was not read
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert file_hash(f) == hashlib.sha256(b"B" * 1000).hexdigest()[:16]
