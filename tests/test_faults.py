"""The bad-input catalogue of DESIGN §4 / issue #6 through the CLI: each fault gives one line starting
"error:" that names the bad value, a non-zero exit, no traceback, and nothing written at the output path.
Most cases call `mva_core.cli.main` in-process (same code path as `python -m mva_core`, which
tests/test_cli.py runs as a real subprocess); docs/faults.md lists what each one prints."""

from __future__ import annotations

import shutil

import pytest

from mva_core import cli
from tests.tiny import make_tiny_llama, make_value_vector


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    make_tiny_llama(root / "base")
    make_tiny_llama(root / "other", seed=7)  # same shapes, other weights
    from transformers import LlamaConfig, LlamaForCausalLM

    wide = LlamaForCausalLM(LlamaConfig(vocab_size=400, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))
    wide.save_pretrained(root / "wide")
    shutil.copy(root / "base" / "tokenizer.json", root / "wide" / "tokenizer.json")
    ok = make_value_vector(root / "base", root / "vec", "help", seed=1)
    make_value_vector(root / "other", root / "vec_other", "help", seed=1)
    make_value_vector(root / "wide", root / "vec_wide", "help", seed=1)
    shutil.copytree(ok, root / "vec_nofile")
    (root / "vec_nofile" / "adapter_model.safetensors").unlink()
    shutil.copytree(ok, root / "vec_trunc")
    f = root / "vec_trunc" / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    shutil.copytree(ok, root / "vec_pickle")
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(root / "vec_pickle" / "adapter_model.safetensors"), root / "vec_pickle" / "adapter_model.bin")
    (root / "vec_pickle" / "adapter_model.safetensors").unlink()
    (root / "noweights").mkdir()  # a model dir with its config and tokenizer but no weight file
    for f in (root / "base").iterdir():
        if f.suffix == ".json" or f.name.startswith("tokenizer"):
            shutil.copy(f, root / "noweights" / f.name)
    files = {
        "missing_key.jsonl": '{"prompt": "a"}\n{"text": "b"}\n',
        "empty_prompt.jsonl": '{"prompt": "a"}\n{"prompt": "  "}\n',
        "bad_json.jsonl": '{"prompt": "a"}\n{"prompt": \n',
        "pairs_missing.jsonl": '{"prompt": "a", "chosen": "x"}\n',
        "nonnumeric.csv": "a,b\n1,2\n3,x\n",
        "missing_col.csv": "a,c\n1,2\n",
        "empty.csv": "",
        "prompts.jsonl": '{"prompt": "a"}\n',
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "latin1.jsonl").write_bytes(b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n')
    return root


def compose(root, adapter, weights="0.5", *extra):
    return ["compose", "--base", root / "base", "--adapter", f"help={adapter}", "--weights", weights, *extra]


def score_with(root, scorer):
    return ["score", "--model", root / "base", "--scorer", scorer, "--prompts", root / "prompts.jsonl",
            "--max-new-tokens", "2"]


CASES = {  # id -> (argv builder, substring the one-line message must contain)
    "weight above C": (lambda r: compose(r, r / "vec", "1.5"), "outside [0, C=1.0]"),
    "weight NaN": (lambda r: compose(r, r / "vec", "nan"), "nan"),
    "weight not a number": (lambda r: compose(r, r / "vec", "abc"), "'abc'"),
    "wrong number of weights": (lambda r: compose(r, r / "vec", "0.5,0.5"), "one weight per value"),
    "grid step 0": (lambda r: ["sweep", "--method", "mva-no-hsic", "--grid", "0:1:0"], "0:1:0"),
    "grid start > stop": (lambda r: ["sweep", "--method", "mva-no-hsic", "--grid", "1:0:0.1"], "1:0:0.1"),
    "grid negative step": (lambda r: ["sweep", "--method", "mva-no-hsic", "--grid", "0:1:-0.1"], "0:1:-0.1"),
    "grid not numbers": (lambda r: ["sweep", "--method", "mva-no-hsic", "--grid", "a:b:c"], "START:STOP:STEP"),
    "grid start off the lattice": (lambda r: ["sweep", "--method", "mva-no-hsic", "--grid", "0.1:1:0.25"],
                                   "START = 0.1 is not on the lattice 0, 0.25, 0.5"),
    "adapter of another base": (lambda r: compose(r, r / "vec_other"), "fingerprint"),
    "adapter of other shapes": (lambda r: compose(r, r / "vec_wide"), "tensor model.layers.0."),
    "missing adapter dir": (lambda r: compose(r, r / "nope"), "does not exist"),
    "missing safetensors": (lambda r: compose(r, r / "vec_nofile"), "adapter_model"),
    "truncated safetensors": (lambda r: compose(r, r / "vec_trunc"), "adapter_model.safetensors"),
    "pickle adapter": (lambda r: compose(r, r / "vec_pickle"), "--allow-pickle"),
    "prompts: missing key": (lambda r: ["score", "--model", r / "base", "--scorer", "brevity", "--prompts",
                                        r / "missing_key.jsonl"], ".jsonl:2: missing field"),
    "prompts: empty prompt": (lambda r: ["score", "--model", r / "base", "--scorer", "brevity", "--prompts",
                                         r / "empty_prompt.jsonl"], ".jsonl:2:"),
    "prompts: invalid JSON": (lambda r: ["score", "--model", r / "base", "--scorer", "brevity", "--prompts",
                                         r / "bad_json.jsonl"], ".jsonl:2: not valid json"),
    "prompts: not UTF-8": (lambda r: ["score", "--model", r / "base", "--scorer", "brevity", "--prompts",
                                      r / "latin1.jsonl"], ".jsonl:2: bytes are not utf-8"),
    "pairs: missing key": (lambda r: ["train", "--method", "dpo", "--values", "help", "--data",
                                      f"help={r / 'pairs_missing.jsonl'}", "--base", r / "base"], ".jsonl:1:"),
    "pareto: non-numeric column": (lambda r: ["pareto", r / "nonnumeric.csv", "--objectives", "a,b"], "'b'"),
    "pareto: missing column": (lambda r: ["pareto", r / "missing_col.csv", "--objectives", "a,b"], "'b'"),
    "pareto: empty file": (lambda r: ["pareto", r / "empty.csv", "--objectives", "a,b"], "empty.csv"),
    # issue 25 items 8 and 9
    "hf: scorer is a file": (lambda r: score_with(r, f"hf:{r / 'empty.csv'}"), "empty.csv is a file"),
    "hf: scorer dir without weights": (lambda r: score_with(r, f"hf:{r / 'noweights'}"), "has no model weights"),
    "hf: scorer is a LoRA adapter": (lambda r: score_with(r, f"hf:{r / 'vec'}"), "is a LoRA adapter"),
    "hf: scorer path does not exist": (lambda r: score_with(r, "hf:/nonexistent"), "/nonexistent does not exist"),
    "base path does not exist": (lambda r: ["compose", "--base", "/nonexistent/base", "--adapter", f"help={r / 'vec'}",
                                            "--weights", "0.5"], "/nonexistent/base does not exist"),
    "base dir without weights": (lambda r: ["compose", "--base", r / "noweights", "--adapter", f"help={r / 'vec'}",
                                            "--weights", "0.5"], "has no model weights"),
    "grid step inf": (lambda r: ["sweep", "--method", "mva-no-hsic", "--grid", "0:1:inf"], "finite"),
    "search batch 0": (lambda r: ["search", "--method", "mva-no-hsic", "--batch", "0"], "--batch 0"),
    "search batch -1": (lambda r: ["search", "--method", "mva-no-hsic", "--batch", "-1"], "--batch -1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fault_gives_one_line_error(case, parts, tmp_path, capsys):
    build, needle = CASES[case]
    out = tmp_path / "out"
    argv = [str(a) for a in build(parts)]
    if argv[0] == "compose":
        argv += ["--out", str(out)]
    ws = tmp_path / "ws"
    if argv[0] in ("sweep", "search"):
        from tests.tiny import make_tiny_workspace

        make_tiny_workspace(ws)
    code = cli.main([*argv, "--workspace", str(ws)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0, case
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err), err
    assert needle.lower() in err[-1].lower(), (case, err[-1])
    assert not out.exists(), "a failed command left output behind"


def test_pickle_adapter_loads_with_explicit_flag(parts, tmp_path):
    code = cli.main([str(a) for a in compose(parts, parts / "vec_pickle", "0.5", "--allow-pickle")]
                    + ["--out", str(tmp_path / "out"), "--workspace", str(tmp_path / "ws")])
    assert code == 0 and (tmp_path / "out" / "model.safetensors").is_file()
