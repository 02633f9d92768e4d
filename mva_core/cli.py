"""`python -m mva_core <command>`: compose, score, pareto, sweep, export, train, data, demo (DESIGN.md §3).

Every command takes --workspace, shows a progress bar on long work, and on bad input exits non-zero
with a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

# Only light modules here, so `--help` answers without loading torch: each command imports what it runs.
from .atomic import PREFERENCE_DATA, atomic_file, check_file_target, check_target
from .config import CPU_SMALL, PAPER, DecodingConfig, check_name, parse_weights
from .data import load_prompts
from .errors import MVAError, as_user_error
from .kinds import GRID_KINDS, SearchSpace
from .notices import notices_to

class CliError(MVAError, ValueError):
    """A command-line argument is malformed."""


# A sweep of more candidates than this runs only with --yes (at ~5 s per candidate on 2 CPU cores, ~40 min).
CONFIRM_CANDIDATES = 500


def _bar() -> Callable[[str, int, int], None]:
    """A tqdm bar per stage name, driven by (stage, done, total) callbacks."""
    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None or bar.total != total or done < bar.n:
            if bar is not None:
                bar.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="token" if stage == "generate" else "step",
                                     file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _named_paths(items: Sequence[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CliError(f"{flag} {item!r}: write it as NAME=PATH, e.g. {flag} help=vectors/help")
        out.append((check_name(name, f"{flag} name"), path))
    return out


# ---- commands ----
def cmd_compose(args: argparse.Namespace) -> int:
    from .export import get_format
    from .models import load_base
    from .vectors import check_compatible, load_value_vector
    check_target(args.out, args.force)  # before minutes of loading and merging
    adapters = _named_paths(args.adapter, "--adapter")
    weights = parse_weights(args.weights)
    SearchSpace(n_values=len(adapters), C=args.C, step=args.C).check(weights)
    base = load_base(args.base, allow_pickle=args.allow_pickle, pickle_flag="--allow-pickle")
    vectors = []
    for name, path in adapters:
        v = load_value_vector(path, allow_pickle=args.allow_pickle)
        v.value = name
        vectors.append(v)
    check_compatible(vectors, base.model, base.fingerprint)
    out = get_format(args.format).model(base, vectors, weights, args.out, force=args.force)
    print(out)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .generate import generate_responses
    from .models import load_base
    from .scorers import get_scorer
    prompts = load_prompts(args.prompts)
    scorers = [get_scorer(s) for s in args.scorer]
    base = load_base(args.model, allow_pickle=args.allow_pickle, pickle_flag="--allow-pickle")
    decoding = DecodingConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    bar = _bar()
    responses = generate_responses(base.model, base.tokenizer, prompts, None, decoding,
                                   progress=lambda d, t: bar("generate", d, t))[0]
    per = {s.name if not args.scorer[i].startswith("hf:") else args.scorer[i]: s.score(prompts, responses)
           for i, s in enumerate(scorers)}
    result = {
        "model": args.model,
        "mean": {k: float(np.mean(v)) for k, v in per.items()},
        "responses": [{"prompt": p, "response": r, **{k: float(v[j]) for k, v in per.items()}}
                      for j, (p, r) in enumerate(zip(prompts, responses))],
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result["mean"].items():
            print(f"{k}\t{v:.4f}")
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from . import pareto
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if not objectives:
        raise CliError("--objectives is empty; name the CSV columns to maximise, e.g. --objectives help,harm")
    F = pareto.load_objectives_csv(args.csv, objectives)
    ref = _ref(args.ref, len(objectives), "objective")
    result = pareto.analyse(F, ref=ref)
    if result.excluded:
        print(f"warning: {len(result.excluded)} row(s) with a non-finite objective excluded from front and "
              f"hypervolume: {result.excluded}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json_dict()))
    else:
        print(f"front rows: {result.pareto}\nhypervolume: {result.hypervolume:.6g} (ref {result.ref})")
    return 0


def _executor(args: argparse.Namespace):
    """The executor `--executor` names (sweep, search, train): local (this process), or Ray."""
    from .executor import RayExecutor
    from .sweep import LocalExecutor
    return RayExecutor(workers=args.workers, address=args.address) if args.executor == "ray" else LocalExecutor()


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import evaluate_base, method_groups, seconds_per_candidate, sweep_groups
    from .workspace import open_workspace
    if args.chunk < 1:
        raise CliError(f"--chunk {args.chunk}: candidates per generate call must be >= 1, e.g. --chunk 8")
    if args.samples is not None and args.samples < 2:
        raise CliError(f"--samples {args.samples}: CRD needs at least 2 sampled responses per prompt, e.g. --samples 3")
    lo, hi, step = _grid(args.grid)
    ws = open_workspace(args.workspace)
    ws.store.check_writable()  # a read-only workspace, or a damaged store, says so before the model loads
    ws.store.check_intact()
    if hi > ws.manifest.C + 1e-9:
        raise CliError(f"--grid {args.grid!r} goes to {hi:g}, above this workspace's C = {ws.manifest.C:g} "
                       f"(workspace.json); use STOP <= {ws.manifest.C:g}")
    prompts = None
    if args.prompts:
        prompts = load_prompts(args.prompts)  # a bad file raises DataFileError naming the line
    values = [v.strip() for v in args.values.split(",") if v.strip()] if args.values else None
    groups = method_groups(ws, args.method, step, kind=args.kind, values=values, prompts=prompts)
    groups = [(ev, W[((W >= lo - 1e-12) & (W <= hi + 1e-12)).all(axis=1)]) for ev, W in groups]
    groups = [(ev, W) for ev, W in groups if len(W)]
    total = sum(len(W) for _, W in groups)
    if total > CONFIRM_CANDIDATES and not args.yes:
        took = seconds_per_candidate(ws)
        eta = (f"about {total * took / 3600:.1f} h at this workspace's last sweep rate ({took:.1f} s per candidate)"
               if took else "no earlier sweep here to estimate the time from")
        raise CliError(f"this sweep has {total:,} candidates ({eta}); pass --yes to run it, or choose a coarser --grid")
    source = "sweep"
    if args.samples is not None and groups:  # CRD's sampled evaluation, beside the workspace decoding's candidates
        from .store import SAMPLED_EVALUATION
        from .sweep import sampled_decoding, sampled_groups
        groups = sampled_groups(groups, sampled_decoding(groups[0][0].decoding, args.samples, args.temperature,
                                                         args.top_p, args.sample_seed))
        source = SAMPLED_EVALUATION
    bar = _bar()
    evaluate_base(ws, groups[0][0].base if groups else None, progress=bar, prompts=prompts)
    res = sweep_groups(args.method, groups, chunk=args.chunk, progress=bar, executor=_executor(args), source=source)
    what = f"sampled evaluation ({args.samples} responses per prompt) of {args.method}" if source != "sweep" else \
        args.method
    print(f"{len(res.candidate_ids)} candidates of {what} in {ws.root}: {res.generated} generated, "
          f"{len(res.candidate_ids) - res.generated} answered from the store")
    return 0


def _grid(text: str) -> tuple[float, float, float]:
    try:
        lo, hi, step = (float(x) for x in text.split(":"))
    except ValueError:
        raise CliError(f"--grid {text!r}: write START:STOP:STEP, e.g. 0:1:0.25") from None
    if not all(np.isfinite([lo, hi, step])):
        raise CliError(f"--grid {text!r}: START, STOP and STEP must be finite numbers, e.g. 0:1:0.25")
    if not (0 <= lo < hi and step > 0):
        raise CliError(f"--grid {text!r}: need 0 <= START < STOP and STEP > 0, e.g. 0:1:0.25")
    k = lo / step  # the lattice starts at 0; a START off it would silently start the sweep elsewhere
    if abs(k - round(k)) > 1e-6:
        raise CliError(f"--grid {text!r}: START = {lo:g} is not on the lattice 0, {step:g}, {2 * step:g}, … that every "
                       f"sweep and search of this step shares; use START = {np.floor(k) * step:g} or "
                       f"{np.ceil(k) * step:g}")
    return lo, hi, step


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_candidate
    from .workspace import open_workspace
    check_target(args.out, args.force)
    ws = open_workspace(args.workspace, read_only=True)
    print(export_candidate(ws, args.candidate, args.format, args.out, force=args.force, method=args.method))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one value vector per value with a registered method; vectors land in <out>/<value>/ and the run
    (config, data hashes, per-step losses and penalty terms) is recorded in the workspace store."""
    from .methods import get_method, train_method
    from .models import load_base
    from .preference_data import load_preference_jsonl, pairs_sha256
    from .store import Store
    method = get_method(args.method)
    values = [check_name(v.strip(), "--values name") for v in args.values.split(",") if v.strip()]
    data = dict(_named_paths(args.data, "--data"))
    if not values or set(data) != set(values):
        raise CliError(f"--values {values} and --data {sorted(data)} must name the same values, one --data VALUE=FILE each")
    # the method's settings from the flags given (generated from the settings dataclasses: `_train_setting_flags`);
    # a flag of another method's setting is refused by make_settings, naming the ones this method has
    given = {k.removeprefix(SETTING_DEST): v for k, v in vars(args).items() if k.startswith(SETTING_DEST) and v is not None}
    if "scorers" in method.settings:  # not a flag: the reward models of the workspace's manifest
        given["scorers"] = _workspace_scorers(args.workspace, values)
    settings = method.make_settings(given).to_dict()  # bad settings fail here, before the base model is loaded
    config = {"cpu-small": CPU_SMALL, "paper": PAPER}[args.preset]
    overrides = {k: v for k, v in [("max_steps", args.steps), ("learning_rate", args.lr), ("seed", args.seed),
                                   ("checkpoint_every", args.checkpoint_every)] if v is not None}
    config = replace(config, **overrides)
    datasets = {v: load_preference_jsonl(data[v]) for v in values}  # in --values order: the training order
    base = load_base(args.base, allow_pickle=args.allow_pickle, pickle_flag="--allow-pickle")
    out_root = Path(args.out) if args.out else Path(args.workspace) / "vectors" / args.method
    run_config = {
        "method": args.method, "values": values, "base": args.base, "base_fingerprint": base.fingerprint,
        "alpha": settings.get("alpha"), "mode": settings.get("mode"), "train_config": config.to_dict(),
        "out": str(out_root),
        "data": {v: {"file": str(data[v]), "sha256": pairs_sha256(datasets[v]), "pairs": len(datasets[v])} for v in values},
    }
    # log: per vector dir (one per value, "seqt", or one per preference "w=0.25,0.75") its curves
    log = train_method(args.method, base, datasets, out_root, config, store=Store(Path(args.workspace) / "mva.sqlite"),
                       run_config={**run_config, **({"settings": settings} if settings else {})},
                       executor=_executor(args), **settings)
    for name, entry in log.items():
        losses = entry["losses"] or [float("nan")]
        print(f"{name}: {out_root / name}  loss {losses[0]:.3f} -> {losses[-1]:.3f}  "
              f"({entry['seconds_per_step'] or 0:.2f} s/step)")
    return 0


SETTING_DEST = "setting_"  # argparse dest prefix of the flags made from method settings


def _train_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of the registered methods' settings dataclasses (methods/*.py): the flag from the field
    name, help from its metadata, choices from its Literal, type from its annotation; a new field appears here."""
    from .methods import setting_flags
    for s in setting_flags():
        parser.add_argument(*s.flags, dest=SETTING_DEST + s.name, type=s.parse, choices=s.choices, default=None,
                            metavar=None if s.choices else s.name.upper(), help=s.help.replace("%", "%%"))


def cmd_data(args: argparse.Namespace) -> int:
    """Preference pairs from the paper's datasets (or a JSONL of their records) into <out>/{train,validation,test}.jsonl."""
    from .preference_data import load_source, write_splits
    check_target(args.out, args.force, PREFERENCE_DATA)
    parsed = load_source(args.source, args.format, args.objective)
    counts = write_splits(parsed, args.out, seed=args.seed, force=args.force)
    skipped = ", ".join(f"{n} {reason}" for reason, n in parsed.skipped.items()) or "none"
    print(f"{parsed.source}: {parsed.n_records} records -> {len(parsed.pairs)} pairs (skipped: {skipped})")
    for name, n in counts.items():
        print(f"{Path(args.out) / (name + '.jsonl')}  {n} lines")
    return 0


def _workspace_scorers(workspace: str | Path, values: list[str]) -> dict[str, str]:
    """value -> scorer spec from the workspace's manifest (MODPO's margins); a value it lacks scores itself."""
    from .workspace import MANIFEST, load_manifest
    path = Path(workspace) / MANIFEST
    known = {v.name: v.scorer for v in load_manifest(path).values} if path.is_file() else {}
    return {v: known.get(v, v) for v in values}


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEMOS, build_demo, demo_report
    from .workspace import REPO_ROOT, open_workspace
    if args.action == "report":
        print(demo_report(open_workspace(args.workspace, read_only=True)))
        return 0
    import logging  # one line per build step (train, evaluate, link, restate), with the time: a long build's log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.demo is None:  # one workspace, where --workspace says, as the 2-value demo
        build_demo(Path(args.workspace), seed=args.seed, progress=_bar())
        return 0
    for name in DEMOS if args.demo == "all" else [args.demo]:  # the shipped ones, each into data/<name>
        print(f"building {name} in {DEMOS[name].root.relative_to(REPO_ROOT)}", file=sys.stderr)
        build_demo(None, seed=args.seed, progress=_bar(), spec=DEMOS[name])
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """A workspace from a base model, values with their scorers and value vectors the user already has."""
    from .workspace import ValueSpec, init_workspace
    values = [ValueSpec(name, scorer) for name, scorer in _named_paths(args.value or [], "--value")]
    vectors: dict[str, dict[str, Path]] = {}
    for item in args.vectors or []:
        method, sep, rest = item.partition("=")
        pairs = [p.partition(":") for p in rest.split(",") if p.strip()]
        if not sep or not pairs or any(not name or not colon or not path for name, colon, path in pairs):
            raise CliError(f"--vectors {item!r}: write it as METHOD=VALUE:DIR,VALUE:DIR, e.g. "
                           "--vectors mva=helpful:runs/help,harmless:runs/harm")
        method = check_name(method, "--vectors method")
        if method in vectors:
            raise CliError(f"--vectors names method {method!r} twice; give all of its value vectors in one flag, "
                           f"e.g. --vectors {method}=helpful:runs/help,harmless:runs/harm")
        names = [check_name(n, "--vectors value") for n, _, _ in pairs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise CliError(f"--vectors {item!r} gives value {twice[0]!r} more than one vector; give one DIR per value")
        vectors[method] = {n: Path(d) for n, (_, _, d) in zip(names, pairs)}
    ws = init_workspace(args.dir, args.base, values, vectors, args.prompts, args.preset,
                        check_base=not args.no_base_check)
    print(f"workspace {ws.root}: values {ws.value_names}, methods {sorted(vectors) or 'none yet'}; open it with "
          f"`MVA_WORKSPACE={ws.root} streamlit run app.py` or --workspace {ws.root}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    """The candidate table for scripts and pandas: method, w_<value>, raw_<value>, z_<value>, on_front, p_front."""
    from .confidence import front_probability_of_table
    from .results import load_table
    from .workspace import open_workspace
    if args.csv != "-":
        check_file_target(args.csv, args.force)  # before reading: a bad path says so at once
    ws = open_workspace(args.workspace, read_only=True)
    table = load_table(ws)
    if args.method:
        known = table.methods(sort=True)
        if args.method not in known:
            raise CliError(f"--method {args.method!r} has no candidates in {ws.root}; methods with candidates: "
                           f"{known or 'none (run a sweep first)'}")
        table = table.for_methods([args.method])  # with the base model; rank and front are per method already
    out = table.frame.reindex(columns=table.results_columns())
    out["p_front"] = front_probability_of_table(ws, table)  # issue 29: share of prompt resamples on the front
    if args.csv == "-":
        out.to_csv(sys.stdout, index=False)
        return 0
    with atomic_file(args.csv, args.force) as tmp:
        out.to_csv(tmp, index=False)
    print(Path(args.csv).resolve(), file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """HV and MIP per method with 95 % BCa bootstrap intervals over prompts, and paired differences with percentile
    intervals (DESIGN §3, issue 27 item 4)."""
    from .confidence import front_shares_of_workspace
    from .design import design_table, explored_mask
    from .diagnostics import hsic_null_table, load_method_vectors
    from .metrics import (compare_with_intervals, comparison_json, crd_by_method, follows_p_by_method,
                          generation_cost)
    from .results import load_table
    from .workspace import open_workspace
    ws = open_workspace(args.workspace, read_only=True)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    if args.resamples < 1000:
        raise CliError(f"--resamples {args.resamples}: use at least 1000 for 95 % intervals")
    everything = load_table(ws)
    table = design_table(ws, everything, args.include_explored)  # each method's sweep design (issue 31 item 4)
    result = compare_with_intervals(ws, table, methods, _ref(args.ref, len(ws.value_names)),
                                    n_resamples=args.resamples, seed=args.seed)
    doc = comparison_json(result, crd_by_method(ws, table, list(result.methods)),
                          follows_p_by_method(ws, table, list(result.methods), args.resamples, args.seed),
                          generation_cost(ws, list(result.methods)))
    # each method's share of the joint front of the compared methods, 95 % percentile interval (issue 29 item 1)
    for name, share in front_shares_of_workspace(ws, table, list(doc["methods"]), args.resamples, args.seed).items():
        doc["methods"][name].update(front_share=share.share.estimate, front_share_ci=share.share.as_list())
    doc["explored"] = {"candidates": int(explored_mask(ws, everything).sum()), "included": args.include_explored}
    # each compared vector set's HSIC beside its permutation null (methods with their own vector per value)
    doc["hsic"] = {m: hsic_null_table(load_method_vectors(ws, m)).to_dict(orient="records")
                   for m in doc["methods"] if m in ws.methods() and len(ws.value_names) >= 2}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"reference point (z): {doc['ref']}; {args.resamples} resamples of {len(ws.prompts())} prompts, "
          f"seed {args.seed}; 95 % {doc['interval']} intervals per method, {doc['diff_interval']} for differences")
    for name, m in doc["methods"].items():
        print(f"{name:>16}  HV {m['hv']:.4f} [{m['hv_ci'][0]:.4f}, {m['hv_ci'][1]:.4f}]  "
              f"MIP {m['mip'] if m['mip'] is None else round(m['mip'], 4)} {m['mip_ci']}  "
              f"CRD {'—' if m['crd'] is None else format(m['crd'], '.4g')}"
              f"{' [{:.4g}, {:.4g}]'.format(*m['crd_ci']) if m.get('crd_ci') else ''}"
              + (f"  follows-p {m['follows_p']:+.2f} [{m['follows_p_ci'][0]:+.2f}, {m['follows_p_ci'][1]:+.2f}]"
                 if m["follows_p"] is not None and None not in m["follows_p_ci"] else "")
              + (f"  {m['cost']['rows_per_token']} row(s)/token, "
                 + ("—" if m["cost"]["seconds_per_candidate"] is None
                    else f"{m['cost']['seconds_per_candidate']:.2f}") + " s/candidate" if m.get("cost") else "")
              + f"  joint-front share {m['front_share']:.2f} "
                f"[{m['front_share_ci'][0]:.2f}, {m['front_share_ci'][1]:.2f}]")
    for pair, d in doc["pairs"].items():
        print(f"{pair:>33}  ΔHV {d['hv_diff']:+.4f} [{d['hv_diff_ci'][0]:+.4f}, {d['hv_diff_ci'][1]:+.4f}]  "
              f"P(a better) {d['p_a_better']:.2f}  {d['verdict']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The paper's Table 1 and figures with intervals, from the store, as DIR/report.html (offline) and DIR/report.md
    (issue 28 item 1); with --train-missing, what lacks is trained and swept first."""
    import time

    from .report import build_report, make_missing
    from .report_render import write_report
    from .workspace import open_workspace
    if args.resamples < 1000:
        raise CliError(f"--resamples {args.resamples}: use at least 1000 for 95 % intervals")
    started = time.perf_counter()
    label = str(args.workspace)
    try:  # commands in the report name the workspace relative to here when it lies below (no machine path shipped)
        label = str(Path(args.workspace).resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        pass
    ws = open_workspace(args.workspace, read_only=not args.train_missing)
    report = build_report(ws, label, args.resamples, args.seed, progress=_bar())
    if args.train_missing and any(m.steps for m in report.missing):
        ws.store.check_writable()
        for line in make_missing(ws, report.missing, progress=_bar()):
            print(line, file=sys.stderr)
        report = build_report(ws, label, args.resamples, args.seed, progress=_bar())
    html_path, md_path = write_report(report, args.out)
    for m in report.missing:
        print(f"lacks: {m.item}: {m.why}; run: {' && '.join(m.commands)}", file=sys.stderr)
    print(f"{html_path}\n{md_path}")
    print(f"report built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    """Win rate of candidates against the base model by a pairwise LLM judge (both orders averaged)."""
    from .results import judge_against_base, load_table
    from .workspace import open_workspace
    ws = open_workspace(args.workspace)
    table = load_table(ws)
    base_id = table.base_id()
    if base_id is None:
        raise CliError(f"{ws.root} has no base-model candidate on its prompts; run a sweep first (it evaluates the "
                       "base model, which the judge compares against)")
    if args.candidate:
        ids = list(dict.fromkeys(args.candidate))
        unknown = [i for i in ids if i not in set(table.ids())]
        if unknown:
            raise CliError(f"--candidate {unknown}: not candidates of {ws.root} on its prompts; list them with "
                           "`python -m mva_core results`")
    else:
        rows = table.front(args.method) if args.method else table.for_methods([], base=False)
        if rows.empty:
            raise CliError(f"--method {args.method!r} has no front candidates in {ws.root}; name a method with "
                           f"candidates ({table.methods(sort=True)}) or pass --candidate ID")
        ids = sorted(set(rows.ids().astype(int)))
    out = judge_against_base(ws, ids, base_id, args.judge)
    doc = {"judge": args.judge, "base_candidate": base_id, "candidates": out.to_dict(orient="records")}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    for row in doc["candidates"]:
        print(f"candidate {row['id']:>5}  wins {row['judge_win']:.2f}  P(better) {row['judge_preference']:.3f}  "
              f"({row['prompts']} prompts{', from the store' if row['from_store'] else ''})")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Adaptive front search: evaluations where the front is (stored like a sweep; a rerun resumes)."""
    from .search import search_method
    from .workspace import open_workspace
    if args.budget < 1:
        raise CliError(f"--budget {args.budget}: the number of new evaluations must be >= 1, e.g. --budget 25")
    if args.batch < 1:
        raise CliError(f"--batch {args.batch}: points chosen per surrogate fit must be >= 1, e.g. --batch 4")
    ws = open_workspace(args.workspace)
    ws.store.check_writable()
    ws.store.check_intact()
    bar = _bar()
    values = [v.strip() for v in args.values.split(",") if v.strip()] if args.values else None
    result, run_id = search_method(ws, args.method, args.budget, step=args.step, seed=args.seed, batch=args.batch,
                                   values=values, progress=bar, executor=_executor(args),
                                   early_stop=args.early_stop)
    if run_id is None:  # the whole budget is already stored: nothing evaluated, no run recorded
        print(f"nothing to search: {result.nothing_new}")
        return 0
    front = result.front
    print(f"search run {run_id} of {args.method}: {len(result.weights)} points known, front of {len(front)}; "
          f"hypervolume {result.hv_history[-1]:.4f} (ref {np.round(result.ref, 3).tolist()}); {result.stop_reason}")
    return 0


def cmd_pick(args: argparse.Namespace) -> int:
    """"Best X with Y at least y" (issue 29 item 2): the stored and the surrogate-predicted answer, in z units;
    --confirm evaluates the predicted weights for real and stores them. Exit 1 when neither answer exists."""
    from .pick import PickQuery, parse_bounds, pick
    from .results import load_table
    from .table import z_column
    from .workspace import open_workspace
    ws = open_workspace(args.workspace, read_only=not args.confirm)
    query = PickQuery(args.maximize, parse_bounds(args.at_least)).check(ws.value_names)
    table = load_table(ws)
    answer = pick(table, query, {m.name: m.kind for m in ws.compared_methods()}, ws.manifest.C, args.method)
    doc = answer.to_json()
    if args.confirm and answer.predicted is not None:
        from .sweep import Evaluator
        ws.store.check_writable()
        p = answer.predicted
        result = Evaluator(ws, p.method).evaluate([[p.weights[v] for v in ws.value_names]], source="pick",
                                                  progress=_bar())
        cid = result.candidate_ids[0]
        row = load_table(ws).for_method(p.method).take([cid]).frame.iloc[0]
        doc["confirmed"] = {"id": int(cid), "method": p.method, "generated": result.generated,
                            "z": {v: float(row[z_column(v)]) for v in ws.value_names},
                            "meets_bounds": bool(all(row[z_column(v)] >= b for v, b in query.at_least.items()))}
    elif args.confirm:
        doc["confirmed"] = None
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0 if answer.found() else 1
    print(f"{query.text()}:")
    s = answer.stored
    print(f"  stored:    candidate {s.id} ({s.method}), weights {s.weights or '—'}, z "
          + ", ".join(f"{v} {x:+.3f}" for v, x in s.z.items()) if s else f"  stored:    none: {answer.stored_why}")
    p = answer.predicted
    print(f"  predicted: {p.method} at weights {p.weights} (within 1 sd: {p.weights_range}), z "
          + ", ".join(f"{v} {p.z[v]:+.3f} ± {p.z_sd[v]:.3f}" for v in p.z)
          + f"; P(bounds met) {p.p_bounds_met:.2f}" if p else f"  predicted: none: {answer.predicted_why}")
    if "confirmed" in doc:
        c = doc["confirmed"]
        print("  confirmed: nothing to evaluate (no predicted point)" if c is None else
              f"  confirmed: candidate {c['id']} ({'generated and scored' if c['generated'] else 'from the store'}), "
              "z " + ", ".join(f"{v} {x:+.3f}" for v, x in c["z"].items())
              + ("" if c["meets_bounds"] else " — it does not meet the bounds"))
    return 0 if answer.found() else 1


def _ref(text: str | None, n: int, noun: str = "value") -> np.ndarray | None:
    """--ref x,y: a reference point with one number per objective (None: the default)."""
    if text is None:
        return None
    try:
        ref = np.array([float(x) for x in text.split(",")])
    except ValueError:
        raise CliError(f"--ref {text!r} is not a list of numbers; write e.g. --ref 0,0 (--ref=-1,-1 for negatives)") from None
    if ref.shape[0] != n:
        raise CliError(f"--ref has {ref.shape[0]} numbers for {n} {noun}s; give one per {noun}")
    return ref


def cmd_serve(args: argparse.Namespace) -> int:
    """An OpenAI-compatible server: every request its own value weights (one model in memory)."""
    if not 0 < args.port < 65536:
        raise CliError(f"--port {args.port}: give a TCP port in 1..65535, e.g. --port 8000")
    if args.replicas < 1:
        raise CliError(f"--replicas {args.replicas}: give 1 (this process) or more (Ray Serve replicas)")
    if args.replicas > 1 or args.address:
        from .serve_ray import serve_replicas  # ray: imported only when asked for

        serve_replicas(args.workspace, args.method, args.host, args.port, args.replicas, args.address)
    else:
        from .serve import serve  # fastapi, uvicorn, torch: loaded when serving

        serve(args.workspace, args.method, args.host, args.port)
    return 0


# ---- parser ----
def _executor_flags(parser: argparse.ArgumentParser, what: str, executor_help: str | None = None,
                    workers_help: str = "Ray actors (one per GPU or CPU slot)") -> None:
    """--executor / --address / --workers: the one executor interface of sweep, search and train (sweep.Executor)."""
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help=executor_help or f"ray: {what} generated by Ray actors (base and vectors loaded once "
                                              "each); the store is written here; results equal the local executor's")
    parser.add_argument("--address", default=None, help="Ray cluster to join (`ray start --head` prints it); "
                                                        "default: start a local Ray")
    parser.add_argument("--workers", type=int, default=2, help=workers_help)


def build_parser(prog: str = "python -m mva_core", command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser. The arguments that need heavy modules to list (train's method settings: the training
    methods, with torch) are built only for `command` (None: for every command), so `--help` and the other
    commands' parsing never load them."""
    p = argparse.ArgumentParser(prog=prog, description="MVA Explorer: multi-value alignment workbench")

    def deep(name: str) -> bool:
        return command is None or command == name

    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.add_argument("--workspace", default=None, help="workspace dir (default $MVA_WORKSPACE or data/workspace)")
        sp.set_defaults(fn=fn)
        return sp

    c = add("compose", cmd_compose, "compose base + Σ w_i θ_i and write it out")
    c.add_argument("--base", required=True, help="hub id, model dir, .gguf file, or smollm2-135m-instruct")
    c.add_argument("--adapter", action="append", required=True, help="VALUE=DIR, once per value vector")
    c.add_argument("--weights", required=True, help="comma-separated, one per adapter, each in [0, C]")
    c.add_argument("--C", type=float, default=1.0, help="weight bound C (default 1)")
    c.add_argument("--out", required=True)
    c.add_argument("--format", choices=["merged", "peft", "mergekit"], default="merged")
    c.add_argument("--force", action="store_true", help="replace an existing --out")
    c.add_argument("--allow-pickle", action="store_true", help="allow pickle checkpoints (can run code)")

    s = add("score", cmd_score, "generate on prompts and score with scorers")
    s.add_argument("--model", required=True)
    s.add_argument("--scorer", nargs="+", required=True, help="registry names, or hf:PATH[@sign=-1]")
    s.add_argument("--prompts", required=True, help="JSONL with a 'prompt' field per line")
    s.add_argument("--max-new-tokens", type=int, default=48)
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--json", action="store_true")
    s.add_argument("--allow-pickle", action="store_true")

    pa = add("pareto", cmd_pareto, "front, ranks and hypervolume of a CSV (objectives maximised)")
    pa.add_argument("csv")
    pa.add_argument("--objectives", required=True)
    pa.add_argument("--ref", default=None, help="reference point, comma-separated (default: per-objective min); for negatives write --ref=-1,-1")
    pa.add_argument("--json", action="store_true")

    sw = add("sweep", cmd_sweep, "evaluate a method's weight grid (resumable)")
    sw.add_argument("--method", required=True)
    sw.add_argument("--grid", default="0:1:0.25", help="START:STOP:STEP per weight")
    sw.add_argument("--kind", choices=GRID_KINDS, default=None,
                    help="override the method's own grid (mva: extrapolation, soup: simplex)")
    sw.add_argument("--chunk", type=int, default=8, help="candidates per weight-batched generate call")
    sw.add_argument("--prompts", default=None, help="prompts JSONL to evaluate on (default: workspace.json's set); "
                                                    "candidates are keyed by their prompts, so sets never mix")
    sw.add_argument("--values", default=None, help="comma-separated subset of values to sweep; the others stay at 0")
    sw.add_argument("--yes", action="store_true", help=f"run a sweep of more than {CONFIRM_CANDIDATES} candidates")
    sw.add_argument("--samples", type=int, default=None, metavar="N",
                    help="a sampled evaluation for CRD (MI-EPO): decode the same candidates again with N >= 2 "
                         "sampled responses per prompt, stored beside the workspace decoding's (greedy) ones")
    sw.add_argument("--temperature", type=float, default=0.7, help="with --samples: sampling temperature")
    sw.add_argument("--top-p", type=float, default=0.95, help="with --samples: nucleus sampling mass")
    sw.add_argument("--sample-seed", type=int, default=0, help="with --samples: the seed each response's own "
                                                              "seed is derived from")
    _executor_flags(sw, "chunks")

    e = add("export", cmd_export, "export a stored candidate")
    e.add_argument("--candidate", type=int, required=True)
    e.add_argument("--format", choices=["merged", "peft", "mergekit", "card", "csv"], default="merged")
    e.add_argument("--out", required=True)
    e.add_argument("--force", action="store_true")
    e.add_argument("--method", default=None, help="the comparison row it is exported from (the card names it); "
                                                   "default: the first method holding the candidate")

    t = add("train", cmd_train, "train value vectors (dpo, mva, mva-no-hsic, ortho, ...)")
    t.add_argument("--method", required=True, help="registered method name, e.g. mva")
    t.add_argument("--values", required=True, help="comma-separated, in training order, e.g. help,harm")
    t.add_argument("--data", action="append", required=True, help="VALUE=FILE.jsonl (prompt/chosen/rejected), once per value")
    t.add_argument("--base", required=True, help="hub id, model dir, .gguf file, or smollm2-135m-instruct")
    t.add_argument("--preset", choices=["cpu-small", "paper"], default="cpu-small")
    t.add_argument("--steps", type=int, default=None, help="override the preset's max_steps")
    t.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--checkpoint-every", type=int, default=None,
                   help="steps between checkpoints in <out>/<value>.partial/; a rerun resumes from the latest (default 10)")
    t.add_argument("--out", default=None, help="default: <workspace>/vectors/<method>")
    t.add_argument("--allow-pickle", action="store_true")
    _executor_flags(t, "the training", "local: trains in this process, with a progress bar; ray: as one Ray task (1 "
                    "CPU, this process's torch threads) that writes the vectors under --out (on a cluster: a path "
                    "every node sees) and prints a line when it starts and when it ends, no bar; the run is recorded "
                    "here either way; vectors equal the local executor's", "CPUs of the local Ray started for it")
    if deep("train"):
        _train_setting_flags(t)  # --alpha, --mode, --preferences, --mapping, ...: the methods' settings fields

    da = add("data", cmd_data, "preference pairs from hh-rlhf / PKU-SafeRLHF, split 94/1/5 into train/validation/test")
    da.add_argument("--from", dest="source", required=True,
                    help="hh-rlhf:helpful-base | hh-rlhf:harmless-base | saferlhf:helpful | saferlhf:harmless | FILE.jsonl")
    da.add_argument("--format", choices=["hh", "saferlhf"], default=None, help="schema of a FILE.jsonl's records")
    da.add_argument("--objective", choices=["helpful", "harmless"], default=None,
                    help="saferlhf FILE.jsonl: prefer better_response_id (helpful) or safer_response_id (harmless)")
    da.add_argument("--out", required=True, help="dir for train.jsonl, validation.jsonl, test.jsonl")
    da.add_argument("--seed", type=int, default=0, help="seed of the split's permutation")
    da.add_argument("--force", action="store_true", help="replace an existing --out")

    i = add("init", cmd_init, "make a workspace from a base model, values and value vectors you already have")
    i.add_argument("dir", help="the new workspace directory (missing or empty)")
    i.add_argument("--base", required=True, help="hub id, model dir or .gguf file; stored as given")
    i.add_argument("--value", action="append", help="NAME=SCORER, once per value, e.g. helpful=hf:Ray2333/gpt2-large-helpful-reward_model")
    i.add_argument("--vectors", action="append", help="METHOD=VALUE:DIR,VALUE:DIR: PEFT LoRA dirs of a method (repeatable)")
    i.add_argument("--prompts", default=None, help="prompts JSONL (default: the shipped validation prompts)")
    i.add_argument("--preset", choices=["paper-hh"], default=None, help="the paper's values, scorers and decoding")
    i.add_argument("--no-base-check", action="store_true", help="skip loading the base to check the adapters' shapes")

    r = add("results", cmd_results, "print the candidate table (CSV) for scripts and pandas")
    r.add_argument("--method", default=None, help="one comparison row, e.g. mva (default: all)")
    r.add_argument("--csv", default="-", help="output file, '-' for stdout (default); an existing file is refused "
                                              "unless --force, a workspace's own files always")
    r.add_argument("--force", action="store_true", help="replace an existing --csv table written by this command")

    se = add("search", cmd_search, "adaptive front search: evaluate where the front is, not the whole grid")
    se.add_argument("--method", required=True)
    se.add_argument("--budget", type=int, default=25, help="new evaluations (a rerun after a kill spends what is left)")
    se.add_argument("--step", type=float, default=0.1,
                    help="the lattice searched: weights 0, step, 2·step, … ≤ C (a sweep at this step reuses the points)")
    se.add_argument("--values", default=None, help="comma-separated subset of values to search; the others stay at 0")
    se.add_argument("--batch", type=int, default=1,
                    help="points chosen per surrogate fit, evaluated in one batch (1 measured best; larger generates "
                         "faster)")
    se.add_argument("--seed", type=int, default=0)
    se.add_argument("--early-stop", action="store_true",
                    help="stop before the budget when the next batch's expected hypervolume gain is below the "
                         "hypervolume's bootstrap sd over prompts (the reason is kept in the run's log)")
    _executor_flags(se, "each batch")

    co = add("compare", cmd_compare, "HV and MIP per method with bootstrap intervals over prompts, paired differences")
    co.add_argument("--methods", default=None, help="comma-separated comparison rows (default: all with candidates)")
    co.add_argument("--ref", default=None, help="reference point in z units, one per value; for negatives --ref=-1,-1")
    co.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the prompts (>= 1000)")
    co.add_argument("--seed", type=int, default=0)
    co.add_argument("--json", action="store_true")
    co.add_argument("--include-explored", action="store_true",
                    help="also count the points evaluated on Explore (default: each method's sweep design, grid and "
                         "search runs, so HV and MIP do not move when a point is explored)")

    rp = add("report", cmd_report, "the paper's Table 1 and Figs. 4-7 with intervals: one offline HTML + markdown")
    rp.add_argument("--out", required=True, help="directory for report.html and report.md (made if missing)")
    rp.add_argument("--train-missing", action="store_true",
                    help="train and sweep what the workspace lacks (ortho, the α runs, ...) first, with progress")
    rp.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the prompts (>= 1000)")
    rp.add_argument("--seed", type=int, default=0)

    pk = add("pick", cmd_pick, "best stored / predicted point for one value with lower bounds on others (z units)")
    pk.add_argument("--maximize", required=True, help="the value to maximise, e.g. warmth")
    pk.add_argument("--at-least", action="append", default=[], metavar="VALUE=Z",
                    help="a lower bound in z units (as the charts), repeatable, e.g. brevity=0.4; "
                         "--at-least=brevity=-0.5 for a negative one")
    pk.add_argument("--method", default=None, help="one comparison row (default: every method; the predicted "
                                                   "answer then comes from the best of the grid methods and policies)")
    pk.add_argument("--confirm", action="store_true", help="evaluate the predicted weights for real and store them")
    pk.add_argument("--json", action="store_true")

    ju = add("judge", cmd_judge, "win rate against the base model by a pairwise LLM judge (judge:hf:MODEL)")
    ju.add_argument("--judge", required=True, help="judge:hf:MODEL (a causal LM that can judge; not the demo's 135M)")
    ju.add_argument("--candidate", type=int, action="append", help="candidate id (repeatable)")
    ju.add_argument("--method", default=None, help="judge this method's front candidates (instead of --candidate)")
    ju.add_argument("--json", action="store_true")

    sv = add("serve", cmd_serve, "OpenAI-compatible server; each request picks its own value weights")
    sv.add_argument("--method", default=None, help="vector set served (default: mva if present)")
    sv.add_argument("--host", default="127.0.0.1", help="bind address; beyond loopback MVA_AUTH_TOKEN is required")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--replicas", type=int, default=1, help="N > 1: a Ray Serve deployment of N replicas")
    sv.add_argument("--address", default=None, help="Ray cluster to deploy on (e.g. ray://HEAD:10001 or auto)")

    d = add("demo", cmd_demo, "demo workspace commands")
    d.add_argument("action", choices=["build", "report"], help="build: (re)build it, resumable; report: its measured numbers")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--demo", choices=[*SHIPPED_DEMOS, "all"], default=None,
                   help="build a shipped demo into data/<name> (all: every one; the command that rebuilds them)")
    return p


# demo.DEMOS's names, written here so `demo --help` needs no torch (demo.py imports the trainers); a test checks
# that they agree (tests/test_packaging.py)
SHIPPED_DEMOS = ("demo", "demo3")


COMMANDS = ("compose", "score", "pareto", "sweep", "export", "train", "data", "init", "results", "search", "compare",
            "report", "judge", "pick", "demo", "serve")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    installed = Path(sys.argv[0]).name == "mva"  # the console script of `pip install .`
    command = next((a for a in argv if not a.startswith("-")), "")  # "" (e.g. --help): no command's heavy arguments
    args = build_parser("mva" if installed else "python -m mva_core",
                        command if command in COMMANDS else "").parse_args(argv)
    if args.workspace is None:
        from .workspace import default_workspace

        args.workspace = default_workspace()
    try:
        with notices_to(lambda message: print(f"\nwarning: {message}", file=sys.stderr)):  # below any progress bar
            return int(args.fn(args))
    except BrokenPipeError:  # the reader of our stdout left (`results | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush is quiet
        return 0
    except Exception as exc:
        user_error = as_user_error(exc)
        if user_error is None:
            raise  # a bug in our code: keep its traceback
        text = str(user_error).strip()
        print(f"error: {text.splitlines()[0] if text else type(user_error).__name__}", file=sys.stderr)
        return 2
