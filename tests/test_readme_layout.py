"""Issue 26 item 8: README's layout table names every module of mva_core/ (and methods/), so a newcomer finds each
one's layer there; a module added without a row fails here."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layout_table() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ")]
    assert rows and rows[0].startswith("| layer |"), "README's Layout section lost its `| layer | modules |` table"
    return "\n".join(rows)


def test_every_module_has_a_row_in_the_layout_table():
    table = _layout_table()
    named = set(re.findall(r"`([A-Za-z_][\w/]*)", table))
    modules = {p.stem for p in (ROOT / "mva_core").glob("*.py") if p.stem != "__init__"}
    missing = sorted(m for m in modules if m not in named)
    assert not missing, f"README's layout table does not name {missing}: add each to the row of its layer"
    methods = {p.stem for p in (ROOT / "mva_core" / "methods").glob("*.py") if p.stem not in ("__init__",)}
    generic = {"base", "harness"}  # named as methods/base, methods/harness; the method modules as methods/<method>.py
    assert all(f"methods/{m}" in table for m in generic & methods)


def test_the_layout_table_has_one_row_per_layer():
    layers = [ln.split("|")[1].strip() for ln in _layout_table().splitlines()[2:]]
    assert len(layers) == len(set(layers)), f"a layer has two rows in README's layout table: {layers}"
