"""Serving throughput: 16 concurrent clients, each at its own weights, through the OpenAI-compatible server.

One run, same prompts, same token counts (min_tokens = max_tokens, greedy), same machine:
  ours     the server (`mva_core.serve`, in-process uvicorn on a free port) over the weight-batched model: every
           client's requests decode together, one forward per step, each row its own weights
  merge    for each request: merge that client's weights into a copy of the base (compose.merge) and generate the
           request alone (batch 1), one request at a time; what serving without per-row weights costs
  base     the base model alone behind the same server code path (ServeEngine over the plain model), the same 16
           concurrent clients: the cost of decoding itself on this machine
  hf_cb    (--hf-cb) transformers' own continuous batching, `generate_batch` on the base model alone, the same
           requests: what the engine behind `transformers serve` gives here (it has no per-request weights)

Each client sends its prompts one after another (chat, `max_tokens` = `min_tokens`), so 16 requests are in flight.
Usage: python bench/serve_throughput.py [--workspace data/demo] [--method mva] [--clients 16] [--prompts 8]
       [--tokens 32] [--merge-requests 16] [--hf-cb]
The last line is exactly `ratio_vs_merge_per_request=X overhead_vs_base=Y p50_latency_s=Z p95_latency_s=W`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mva_core.compose import merge  # noqa: E402
from mva_core.models import chat_prompt  # noqa: E402
from mva_core.serve import Dial, create_app  # noqa: E402
from mva_core.serve_engine import ServeEngine  # noqa: E402
from mva_core.sweep import Evaluator  # noqa: E402
from mva_core.workspace import Workspace  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_in_thread(dial: Dial):
    """uvicorn in a thread of this process, on a free loopback port; returns (server, base_url)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(dial), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1"


def run_clients(url: str, prompts: list[str], n: int, weights: np.ndarray | None, values: list[str], tokens: int
                ) -> tuple[float, list[float], int]:
    """`n` clients at once, each its prompts in turn, client k at `weights[k]` (None: the base model's server);
    returns (wall seconds, per-request latencies, completion tokens)."""
    from openai import AsyncOpenAI

    async def client(k: int, api: AsyncOpenAI) -> list[tuple[float, int]]:
        out = []
        extra = {} if weights is None else {"mva": {"weights": dict(zip(values, map(float, weights[k])))}}
        for p in prompts:
            t0 = time.perf_counter()
            r = await api.chat.completions.create(model="mva", messages=[{"role": "user", "content": p}],
                                                  max_tokens=tokens, temperature=0,
                                                  extra_body={"min_tokens": tokens, **extra})
            out.append((time.perf_counter() - t0, r.usage.completion_tokens))
        return out

    async def everyone(n: int) -> list[list[tuple[float, int]]]:
        api = AsyncOpenAI(base_url=url, api_key="bench", max_retries=0, timeout=3600)
        return await asyncio.gather(*[client(k, api) for k in range(n)])

    t0 = time.perf_counter()
    results = asyncio.run(everyone(n))
    wall = time.perf_counter() - t0
    lat = [x for rows in results for x, _ in rows]
    return wall, lat, sum(t for rows in results for _, t in rows)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="data/demo")
    ap.add_argument("--method", default="mva")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--merge-requests", type=int, default=16,
                    help="requests timed for the merge baseline (one per client in turn; its rate is per request, "
                         "so a subset measures it; 0 = all clients x prompts)")
    ap.add_argument("--hf-cb", action="store_true", help="also time transformers' generate_batch on the base alone")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    ws = Workspace(args.workspace, read_only=True)
    ev = Evaluator(ws, args.method)
    tok = ev.base.tokenizer
    prompts = ws.prompts()[:args.prompts]
    rng = np.random.default_rng(args.seed)
    W = rng.uniform(0, ws.manifest.C, size=(args.clients, len(ws.value_names))).round(2)
    values = ws.value_names
    print(f"{args.clients} clients x {len(prompts)} prompts x {args.tokens} tokens, greedy; {torch.get_num_threads()} "
          f"torch threads; method {args.method}", flush=True)

    # ---- ours ----
    engine = ServeEngine(ev.model, tok)
    server, url = serve_in_thread(Dial(ws, args.method, engine, tok))
    run_clients(url, prompts[:1], 2, W[:2], values, 4)  # warm-up
    wall, lat, n_tok = run_clients(url, prompts, args.clients, W, values, args.tokens)
    ours = n_tok / wall
    p50, p95 = float(np.percentile(lat, 50)), float(np.percentile(lat, 95))
    print(f"ours: {n_tok} tokens in {wall:.1f} s = {ours:.1f} tok/s; latency p50 {p50:.2f} s p95 {p95:.2f} s; "
          f"largest batch {engine.max_batch_seen} rows, {engine.steps} decoding steps", flush=True)
    server.should_exit = True
    engine.close()

    # ---- base alone, same server path ----
    engine = ServeEngine(ev.base.model, tok)
    server, url = serve_in_thread(Dial(ws, args.method, engine, tok))
    b_wall, b_lat, b_tok = run_clients(url, prompts, args.clients, None, values, args.tokens)
    base = b_tok / b_wall
    print(f"base: {b_tok} tokens in {b_wall:.1f} s = {base:.1f} tok/s; latency p50 {np.percentile(b_lat, 50):.2f} s",
          flush=True)
    server.should_exit = True
    engine.close()

    # ---- merge per request, one request at a time ----
    jobs = [(k, j) for j in range(len(prompts)) for k in range(args.clients)]
    jobs = jobs[:args.merge_requests] if args.merge_requests > 0 else jobs
    t0 = time.perf_counter()
    m_tok = 0
    for k, j in jobs:
        model = merge(ev.base.model, ev.vectors, W[k])
        enc = tok(chat_prompt(tok, prompts[j], ws.manifest.decoding.system_prompt), return_tensors="pt",
                  add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        m_tok += out.shape[1] - enc["input_ids"].shape[1]
        del model
    m_wall = time.perf_counter() - t0
    merged = m_tok / m_wall
    print(f"merge per request: {m_tok} tokens of {len(jobs)} requests in {m_wall:.1f} s = {merged:.1f} tok/s",
          flush=True)

    rows = [("tokens/s vs merge per request", ours, merged, ours / merged),
            ("time per token vs base alone (same server)", 1 / ours, 1 / base, base / ours)]
    if args.hf_cb:
        from transformers import GenerationConfig

        texts = [chat_prompt(tok, p, ws.manifest.decoding.system_prompt) for p in prompts] * args.clients
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        model = ev.base.model
        model.set_attn_implementation("paged|sdpa")
        cfg = GenerationConfig(max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        t0 = time.perf_counter()
        outs = model.generate_batch(inputs=ids, generation_config=cfg)
        h_wall = time.perf_counter() - t0
        model.set_attn_implementation("sdpa")
        h_tok = sum(len(o.generated_tokens) for o in outs.values())
        print(f"hf generate_batch (base alone): {h_tok} tokens in {h_wall:.1f} s = {h_tok / h_wall:.1f} tok/s",
              flush=True)
        rows.append(("our base path vs transformers generate_batch (both base alone)", base, h_tok / h_wall,
                     base / (h_tok / h_wall)))
    print(f"{'name':<62}{'ours':>12}{'baseline':>12}{'ratio':>8}")
    for name, a, b, r in rows:
        print(f"{name:<62}{a:>12.4g}{b:>12.4g}{r:>8.2f}")
    print(f"ratio_vs_merge_per_request={ours / merged:.2f} overhead_vs_base={base / ours:.2f} "
          f"p50_latency_s={p50:.2f} p95_latency_s={p95:.2f}")


if __name__ == "__main__":
    main()
