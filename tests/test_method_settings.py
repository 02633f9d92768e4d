"""Method settings as dataclasses (issue 26 item 2): unknown settings refused with the known ones listed, a help per
field, `train` flags generated from the fields, ortho a setting of the one decorrelation method, and the run
identity of the shipped demo's settings unchanged (its vectors are still recognised as finished)."""

from __future__ import annotations

import argparse
import inspect
import json
import re
import shutil
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Literal

import pytest

from mva_core import cli
from mva_core.config import ConfigError, TrainConfig
from mva_core.demo import DEMOS, RUN_KEYS, demo_train_config
from mva_core.errors import MVAError
from mva_core.methods import (
    MethodSettings, UnknownSettingError, available_methods, base as methods_base, get_method, register_method,
    train_method,
)
from mva_core.methods import mva as mva_module
from mva_core.methods.mva import DecorrelationSettings
from mva_core.models import load_base
from mva_core.preference_data import load_preference_jsonl
from mva_core.store import Store
from test_cli import run
from test_methods_dpo import PAIRS as HELP
from tiny import make_tiny_llama

ROOT = Path(__file__).resolve().parent.parent
HARM = [{"prompt": p["prompt"], "chosen": p["rejected"], "rejected": p["chosen"]} for p in HELP]
CFG = TrainConfig(lora_r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], learning_rate=5e-2, max_steps=1,
                  per_device_batch_size=4, max_length=64, seed=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("settings")
    make_tiny_llama(root / "base")
    return root, load_base(str(root / "base"))


def train_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """option string -> action of the `train` subcommand, read from the parser itself."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {s: a for a in sub.choices["train"]._actions for s in a.option_strings}


def cli_fields(method: str) -> list:
    return [f for f in fields(get_method(method).settings_class) if f.metadata.get("cli", True)]


# ---- unknown settings ----

def test_unknown_setting_is_refused_listing_the_known_ones(tiny, tmp_path):
    root, base = tiny
    store = Store(tmp_path / "mva.sqlite")
    with pytest.raises(UnknownSettingError) as err:
        train_method("mva", base, {"help": HELP}, tmp_path / "out", CFG, store=store, progress=False, alphaa=3)
    text = str(err.value)
    assert isinstance(err.value, MVAError) and "'alphaa'" in text
    for name in ("alpha", "penalty", "mode", "estimator", "kernel", "sigma"):
        assert name in text
    assert not (tmp_path / "out").exists() and store.runs().empty  # refused before anything ran or was recorded

    # the same through a settings dict with a typo, and through train_all (the method's own entry point)
    with pytest.raises(UnknownSettingError, match=r"'preference'.*its settings are: preferences\."):
        get_method("dpo-lw").make_settings({"preference": [[0.5, 0.5]]})
    with pytest.raises(UnknownSettingError, match=r"its settings are: \(none\)"):
        get_method("dpo").train_all(base.path, {"help": HELP}, tmp_path / "dpo", CFG, base.fingerprint, alpha=1.0)
    assert not (tmp_path / "dpo").exists()
    # a setting of the wrong type is a ConfigError naming the field (not silently coerced)
    with pytest.raises(ConfigError, match=r"DecorrelationSettings\.alpha = '10'"):
        get_method("mva").make_settings(alpha="10")


@pytest.mark.slow
def test_cli_refuses_a_flag_of_another_method(tiny, tmp_path):
    root, _ = tiny
    data = tmp_path / "help.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in HELP))
    proc = run("train", "--method", "dpo", "--values", "help", "--data", f"help={data}", "--base", root / "base",
               "--alpha", "5", "--workspace", tmp_path / "ws", check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "method 'dpo' has no setting 'alpha'" in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "ws" / "vectors").exists()


# ---- a dataclass per method, a help per field ----

def test_every_method_has_a_settings_dataclass_with_help_per_field():
    for name in available_methods():
        cls = get_method(name).settings_class
        assert is_dataclass(cls) and issubclass(cls, MethodSettings), name
        defaults = cls()  # every field has a default
        for f in fields(cls):
            assert f.default is not MISSING or f.default_factory is not MISSING, (name, f.name)
            assert isinstance(f.metadata.get("help"), str) and len(f.metadata["help"]) > 10, (name, f.name)
        assert cls.from_dict(json.loads(json.dumps(defaults.to_dict()))) == defaults
        assert get_method(name).settings == tuple(f.name for f in fields(cls))
    # the per-variant defaults the paper gives (DESIGN §1)
    assert (get_method("mva").make_settings().alpha, get_method("mva-no-hsic").make_settings().alpha) == (10.0, 0.0)
    assert (get_method("mo-odpo").make_settings().beta_w, get_method("mi-epo").make_settings().beta_w) == (0.0, 0.01)


def test_the_torch_free_settings_map_is_the_registrys(monkeypatch):
    """`method_settings.SETTINGS` (what `train --help` reads without loading a trainer) names every built-in method
    with the class its trainer uses, and registering a built-in name with another class is refused."""
    from mva_core.method_settings import SETTINGS

    builtin = {n for n in available_methods() if get_method(n).__module__.startswith("mva_core.methods.")}
    assert builtin == set(SETTINGS) and len(SETTINGS) == 13
    for name, cls in SETTINGS.items():
        assert get_method(name).settings_class is cls, name
    monkeypatch.setattr(methods_base, "_REGISTRY", dict(methods_base._REGISTRY))
    with pytest.raises(TypeError, match=r"'mva': settings_class MethodSettings is not DecorrelationSettings"):
        @register_method("mva")
        class Wrong:
            paper = "https://example.org/wrong"


# ---- train flags generated from the fields ----

@pytest.mark.slow
def test_train_help_has_a_flag_for_every_cli_field():
    options = train_options(cli.build_parser())
    help_text = run("train", "--help").stdout
    for name in available_methods():
        for f in cli_fields(name):
            flag = "--" + f.name.replace("_", "-")
            assert flag in options and flag in help_text, (name, flag)
            action, hint = options[flag], typing.get_type_hints(get_method(name).settings_class)[f.name]
            assert action.default is None and len(action.help) > 10
            assert name in re.findall(r"[\w-]+", action.help.rsplit("[", 1)[1]), (name, flag)  # "[mva, ortho: ...]"
            if typing.get_origin(hint) is Literal:  # closed choices become argparse choices
                assert tuple(action.choices) == typing.get_args(hint), flag
    assert "--scorers" not in options  # filled from the workspace manifest, never a flag
    assert options["--hsic-estimator"] is options["--estimator"]  # the older spelling still works
    parsed = cli.build_parser().parse_args(["train", "--method", "mva", "--values", "a", "--data", "a=f", "--base", "b",
                                            "--hsic-estimator", "unbiased", "--alpha", "2.5",
                                            "--preferences", "0.25,0.75;1,0"])
    assert (parsed.setting_estimator, parsed.setting_alpha) == ("unbiased", 2.5)
    assert parsed.setting_preferences == [[0.25, 0.75], [1.0, 0.0]]
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--method", "mva", "--values", "a", "--data", "a=f", "--base", "b",
                                       "--mode", "rows"])


def test_a_new_settings_field_appears_in_the_train_parser(monkeypatch):
    @dataclass
    class Extended(DecorrelationSettings):
        warmup_steps: int = field(default=3, metadata={"help": "steps before the penalty starts"})
        schedule: Literal["flat", "ramp"] = field(default="flat", metadata={"help": "how α grows over warmup"})
        notes: dict | None = field(default=None, metadata={"help": "from the workspace", "cli": False})

    monkeypatch.setattr(get_method("mva"), "settings_class", Extended)
    options = train_options(cli.build_parser())
    assert options["--warmup-steps"].type is int and "steps before the penalty starts" in options["--warmup-steps"].help
    assert tuple(options["--schedule"].choices) == ("flat", "ramp") and "--notes" not in options
    parsed = cli.build_parser().parse_args(["train", "--method", "mva", "--values", "a", "--data", "a=f", "--base", "b",
                                            "--warmup-steps", "7", "--schedule", "ramp"])
    assert (parsed.setting_warmup_steps, parsed.setting_schedule) == (7, "ramp")
    assert get_method("mva").make_settings(warmup_steps=7).warmup_steps == 7

    # a brand-new method registered with its own settings gets its flags too; a field without help is refused
    @dataclass
    class Fresh(MethodSettings):
        gamma: float = field(default=0.5, metadata={"help": "a new knob"})

    monkeypatch.setattr(methods_base, "_REGISTRY", dict(methods_base._REGISTRY))

    @register_method("test-fresh")
    class FreshMethod:
        paper = "https://example.org/fresh"
        settings_class = Fresh

    assert options.keys() <= train_options(cli.build_parser()).keys()
    assert "[test-fresh: default 0.5]" in train_options(cli.build_parser())["--gamma"].help

    @dataclass
    class NoHelp(MethodSettings):
        delta: float = 1.0

    monkeypatch.setattr(get_method("test-fresh"), "settings_class", NoHelp)
    with pytest.raises(TypeError, match="NoHelp.delta .*needs metadata"):
        cli.build_parser()


# ---- ortho is a setting ----

@pytest.mark.slow
def test_ortho_is_the_decorrelation_method_with_another_penalty(tiny, tmp_path):
    mva, ortho, no_hsic = get_method("mva"), get_method("ortho"), get_method("mva-no-hsic")
    assert type(ortho).train_vectors is type(mva).train_vectors is type(no_hsic).train_vectors
    differ = {k for k, v in mva.make_settings().to_dict().items() if ortho.make_settings().to_dict()[k] != v}
    assert differ == {"penalty"}
    # no method name decides the penalty in mva.py (`method == "ortho"` and the like are gone) ...
    source = inspect.getsource(mva_module)
    assert not re.search(r"method\s*(==|!=|in)\s*[\"'(\[]|[\"']\s*==\s*method", source)
    # ... and the setting does: `mva` with penalty="ortho" trains against ‖ΔW_iᵀ ΔW_j‖²_F, recorded as such
    root, base = tiny
    train_method("mva", base, {"help": HELP, "harm": HARM}, tmp_path / "v", CFG, progress=False, penalty="ortho",
                 alpha=1.0)
    meta = json.loads((tmp_path / "v" / "harm" / "mva_vector.json").read_text())
    assert meta["method"] == "mva" and meta["penalty"] == "ortho" and len(meta["ortho_terms"]) == 1
    assert "hsic_terms" not in meta and "hsic_mode" not in meta
    # at step 1 the second vector's B is 0, so ΔW_2 = 0 and the orthogonality term is exactly 0
    assert meta["ortho_terms"] == [0.0]


# ---- run identity of the shipped demo ----

def test_shipped_demo_vectors_are_still_this_runs_vectors(tmp_path):
    """The demo's sequential methods with its settings, through the new settings path, recognise every shipped
    vector as a finished vector of the same run (the resume check compares alpha, penalty, HSIC options, data,
    config and earlier vectors with what the old code wrote), so a rebuild retrains nothing."""
    spec, demo = DEMOS["demo"], ROOT / "data" / "demo"
    values = [v.name for v in spec.values]
    datasets = {v: load_preference_jsonl(demo / "pairs" / f"{v}.jsonl") for v in values}
    seed = json.loads((demo / "PROVENANCE.json").read_text()).get("seed", 0) if (demo / "PROVENANCE.json").is_file() else 0
    for method in ("mva", "mva-no-hsic"):
        settings = {k: v for k, v in spec.methods[method].items() if k != "train"}
        out = tmp_path / method
        shutil.copytree(demo / "vectors" / method, out)
        fingerprint = json.loads((out / values[0] / "mva_vector.json").read_text())["base_fingerprint"]
        config = replace(demo_train_config(seed), **spec.methods[method].get("train", {}))
        summaries = get_method(method).train_all("not-loaded: every vector is finished", datasets, out, config,
                                                 fingerprint, progress=False, **settings)
        assert [s.get("skipped") for s in summaries] == [True] * len(values), method
    # the conditioned policies' settings enter their run identity as recorded in their metadata
    for method in ("mo-odpo", "mi-epo"):
        meta = json.loads((demo / "vectors" / method / "policy" / "mva_vector.json").read_text())
        s = get_method(method).make_settings().to_dict()
        assert {k: meta[k] for k in ("beta_w", "dirichlet_alpha", "max_new_tokens", "temperature")} == \
            {k: s[k] for k in ("beta_w", "dirichlet_alpha", "max_new_tokens", "temperature")}
    for d in (demo / "vectors" / "dpo-lw").iterdir():
        want = json.loads((d / "mva_vector.json").read_text())["preference"]
        settings = {k: v for k, v in spec.methods["dpo-lw"].items() if k not in RUN_KEYS}  # "store" is the run's
        assert want in get_method("dpo-lw").make_settings(**settings).preferences


def test_a_flag_shared_with_different_meanings_names_each_meaning():
    """`--alpha` is mva's penalty weight and mva-no-hsic's fixed 0: its help names both, each with its methods,
    instead of reading as whichever method sorts first."""
    from mva_core.methods.base import setting_flags
    alpha = next(f for f in setting_flags() if f.name == "alpha")
    text = alpha.help
    assert "mva, mva-delta, ortho: penalty weight" in text and "mod, mva-no-hsic, soup: fixed at 0" in text
    mapping = next(f for f in setting_flags() if f.name == "mapping")  # one method, one meaning: no method prefix
    assert not mapping.help.startswith("ric:") and mapping.help.endswith("[ric: default linf]")
