"""One name per export (issue 31 item 7): every file an export writes names the method row it was exported from,
also when the candidate's vectors were trained under another name (mva's first vector is mva-no-hsic's, soup reads
mva-no-hsic's vectors). Before, a PEFT export of an `mva` candidate wrote "method": "mva-no-hsic" into
mva_vector.json while its card said `mva`."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from mva_core.export import FORMATS, export_candidate
from mva_core.sweep import Evaluator, evaluate_base
from mva_core.vectors import ADAPTER_FILE, file_hash
from tests.tiny import make_tiny_workspace, make_value_vector


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("names")
    ws = make_tiny_workspace(root, n_prompts=2)
    # mva's first vector is the very file mva-no-hsic trained (no earlier vector, so no HSIC term); its second differs
    shutil.copytree(root / "vectors" / "mva-no-hsic" / "warmth", root / "vectors" / "mva" / "warmth")
    meta = root / "vectors" / "mva" / "warmth" / "mva_vector.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "method": "mva"}))
    make_value_vector(root / "base", root / "vectors" / "mva" / "brevity", "brevity", seed=20, method="mva")
    assert (file_hash(root / "vectors" / "mva" / "warmth" / ADAPTER_FILE)
            == file_hash(root / "vectors" / "mva-no-hsic" / "warmth" / ADAPTER_FILE))
    evaluate_base(ws, Evaluator(ws, "mva").base)
    Evaluator(ws, "mva").evaluate([[0.5, 0.5]])
    Evaluator(ws, "mva-no-hsic").evaluate([[0.5, 0.5]])
    return ws


def _names(out, fmt: str, cid: int, method: str) -> set[str]:
    """Every method name the export's files carry (the card's YAML, the adapter metadata, the csv's exported row)."""
    names = set()
    if (out / "README.md").is_file():
        names.add(yaml.safe_load((out / "README.md").read_text().split("---")[1])["mva"]["method"])
    if (out / "mva_vector.json").is_file():
        names.add(json.loads((out / "mva_vector.json").read_text())["method"])
    if fmt == "csv":
        for table in (pd.read_csv(out / "candidates.csv"), pd.read_json(out / "candidates.json")):
            rows = table[table["exported"].astype(bool)]
            assert rows["id"].tolist() == [cid]
            names |= set(rows["method"])
    return names


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("source, method", [("mva", None), ("mva", "mva"), ("mva-no-hsic", "soup"),
                                            ("mva-no-hsic", "mva-no-hsic")])
def test_every_export_file_names_the_row_exported_from(ws, tmp_path, fmt, source, method):
    cid = int(ws.store.candidates(source)["id"].iloc[0])
    out = export_candidate(ws, cid, fmt, tmp_path / fmt, method=method)
    want = method or source
    assert _names(out, fmt, cid, want) == {want}, fmt
    if fmt == "peft":  # the adapter's weights are mva's own: its first vector's hash is shared, its second is not
        card = yaml.safe_load((out / "README.md").read_text().split("---")[1])["mva"]
        trained = {v: c["trained_as"] for v, c in card["value_vectors"].items()}
        assert trained == ({"warmth": "mva", "brevity": "mva"} if source == "mva"
                           else {"warmth": "mva-no-hsic", "brevity": "mva-no-hsic"})
