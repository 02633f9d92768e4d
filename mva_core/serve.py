"""Serve the dial: an OpenAI-compatible HTTP server where every request picks its own value weights.

`python -m mva_core serve --workspace W [--method mva] [--host 127.0.0.1 --port 8000] [--replicas N]`

Layout as vLLM's and transformers' OpenAI entrypoints: protocol models that mirror the OpenAI spec field by field
(pydantic), one function that builds every error body (`error_body`), a thin route per endpoint, and the engine
(`serve_engine.ServeEngine`: continuous batching, per-row weights) behind it, knowing nothing of HTTP.

A request's point of the front (MVA Eq.15, w ∈ [0, C]^n), in one of three ways:
- the body field `"mva": {"weights": {"warmth": 0.7, "brevity": 0.3}}` (the openai client's `extra_body=`);
- the model name `"mva:warmth=0.7,brevity=0.3"` (for clients that send no extra fields);
- the id of a stored candidate, `"candidate-17"` (`GET /v1/models` lists the method's front candidates).
A value left out weighs 0. `"mva": {"score": true}` adds the workspace's scorers' values of each reply.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Literal, Sequence

import numpy as np
from pydantic import BaseModel as Schema, ConfigDict, Field

from .access import is_loopback, required_token, token_matches
from .config import DecodingConfig
from .errors import MVAError
from .generate import PromptTooLongError
from .models import HUMAN_TURN, ASSISTANT_TURN, chat_prompt, dialogue_prompt, reply_stop
from .serve_engine import EngineRequest, Event, ServeEngine, seed_of
from .workspace import Workspace, WorkspaceError

MODEL_PREFIX = "mva:"  # "mva:warmth=0.7,brevity=0.3"
CANDIDATE_PREFIX = "candidate-"  # "candidate-17"
MAX_CHOICES = 16
MAX_STOPS = 4


class ServeRequestError(MVAError, ValueError):
    """A request the server refuses: HTTP status, the field at fault (`param`) and a message saying the fix."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str = "invalid_value"):
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code


def error_body(message: str, param: str | None = None, code: str | None = None,
               kind: str = "invalid_request_error") -> dict[str, Any]:
    """The one OpenAI-style error body: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# ---- Protocol (OpenAI's field names; what we do not read is ignored, as OpenAI-compatible servers do) ----
class MvaOptions(Schema):
    """The `mva` body field: the point of the front and whether to score the reply."""

    model_config = ConfigDict(extra="forbid")
    weights: dict[str, Any] | None = None  # checked by `Dial.weights_of`, so every bad value gets its own message
    score: bool = False


class ChatMessage(Schema):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")


class StreamOptions(Schema):
    include_usage: bool = False


class _Sampling(Schema):
    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    min_tokens: int | None = Field(default=None, ge=0)  # vLLM's extension: no EOS before this many tokens
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    mva: MvaOptions | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str]


# ---- The workspace side: which point a request names, its prompt, its scores ----
@dataclass
class Decoding:
    """One request's decoding, after the workspace's defaults filled what it left out."""

    max_new_tokens: int
    min_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]


class Dial:
    """A workspace's method served: its value names, C, decoding defaults, stored candidates and scorers.

    `engine` decodes over a `WeightBatchedModel` (an `Evaluator`'s, shared with the app) or, for the benchmark's
    baseline, over the plain base model (then every request is the base model and weights are refused).
    """

    def __init__(self, workspace: Workspace, method: str, engine: ServeEngine, tokenizer: object):
        self.ws, self.method, self.engine, self.tokenizer = workspace, method, engine, tokenizer
        self.values = list(workspace.value_names) if engine.n_values else []
        self.C = float(workspace.manifest.C)
        self.decoding: DecodingConfig = workspace.manifest.decoding
        self.created = int(time.time())
        self._table_version: int | None = None
        self._candidates: dict[str, dict[str, Any]] = {}
        self._front: list[str] = []

    # ---- points ----
    def candidates(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """id -> {weights, scores, z, on_front} of the method's stored candidates (reread when the store changes),
        and the ids on its front."""
        from .results import load_table  # the candidate table (pandas): loaded when first listed

        version = self.ws.store.version()
        if version != self._table_version:
            table = load_table(self.ws, [self.method]).for_method(self.method).without_base()
            rows: dict[str, dict[str, Any]] = {}
            on_front = {int(i) for i in table.front().ids()}
            W, raw, z = table.weights(), table.raw(), table.z()
            for k, cid in enumerate(table.ids()):
                rows[f"{CANDIDATE_PREFIX}{int(cid)}"] = {
                    "weights": dict(zip(self.values, map(float, W[k]))),
                    "scores": dict(zip(self.values, map(_finite_or_none, raw[k]))),
                    "z": dict(zip(self.values, map(_finite_or_none, z[k]))), "on_front": int(cid) in on_front}
            front = [name for name, row in rows.items() if row["on_front"]]
            self._candidates, self._front, self._table_version = rows, front, version
        return self._candidates, self._front

    def weights_of(self, model: str, options: MvaOptions | None) -> np.ndarray:
        """The request's weights (n_values,), from `mva.weights`, a `mva:NAME=w,…` model name or a candidate id;
        each checked against the workspace's values and [0, C]."""
        given = options.weights if options is not None else None
        if not self.values:  # the base model alone (benchmark baseline)
            if given:
                raise ServeRequestError("this server serves the base model alone; it takes no weights",
                                        "mva.weights")
            return np.zeros(0, dtype=np.float32)
        spelled = model.startswith(MODEL_PREFIX)
        stored = model.startswith(CANDIDATE_PREFIX)
        if given is not None and (spelled or stored):
            raise ServeRequestError(f"the point is named twice: model {model!r} and mva.weights; give one of them",
                                    "mva.weights")
        if given is not None:
            return self._check(given, "mva.weights")
        if spelled:
            return self._check(self._parse_name(model), "model")
        if stored:
            rows, front = self.candidates()
            if model not in rows:
                shown = ", ".join(front[:5]) or "none stored yet"
                raise ServeRequestError(f"model {model!r} is no stored candidate of method {self.method!r}; GET "
                                        f"/v1/models lists them (front: {shown})", "model", code="model_not_found")
            return np.asarray([rows[model]["weights"][v] for v in self.values], dtype=np.float32)
        example = ",".join(f"{v}=0.5" for v in self.values)
        raise ServeRequestError(
            f"model {model!r} names no point of the front; use model \"{MODEL_PREFIX}{example}\", a stored candidate "
            f"id from GET /v1/models (e.g. \"{CANDIDATE_PREFIX}1\"), or send \"mva\": {{\"weights\": "
            f"{{{', '.join(repr(v) + ': 0.5' for v in self.values)}}}}} in the body".replace("'", '"'), "model",
            code="model_not_found")

    def _parse_name(self, model: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in model[len(MODEL_PREFIX):].split(","):
            name, eq, number = part.partition("=")
            if not eq:
                raise ServeRequestError(f"model {model!r}: {part!r} is not VALUE=WEIGHT; write e.g. "
                                        f"{MODEL_PREFIX}{self.values[0]}=0.7", "model")
            try:
                out[name.strip()] = float(number)
            except ValueError:
                raise ServeRequestError(f"model {model!r}: the weight of {name.strip()!r} is {number!r}, not a "
                                        "number; write e.g. 0.7", "model") from None
        return out

    def _check(self, given: dict[str, Any], param: str) -> np.ndarray:
        unknown = sorted(set(given) - set(self.values))
        if unknown:
            raise ServeRequestError(f"{param}: {unknown} are not values of this workspace; its values are "
                                    f"{self.values}", f"{param}.{unknown[0]}" if param != "model" else param)
        w = np.zeros(len(self.values), dtype=np.float32)
        for i, v in enumerate(self.values):
            x = given.get(v, 0.0)
            where = f"{param}.{v}" if param != "model" else param
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise ServeRequestError(f"{where} = {x!r} is not a number; give a weight in [0, {self.C:g}]", where)
            if not math.isfinite(x):
                raise ServeRequestError(f"{where} = {x}: a weight must be a finite number in [0, {self.C:g}]", where)
            if not 0 <= x <= self.C:
                raise ServeRequestError(f"{where} = {x:g} is outside [0, C] = [0, {self.C:g}] (workspace.json's C); "
                                        "give a weight inside it", where)
            w[i] = x
        return w

    # ---- prompts and decoding ----
    def chat_text(self, messages: Sequence[ChatMessage]) -> str:
        """The conversation rendered as the sweep renders a prompt (`models.chat_prompt`): the chat template with
        the workspace's system prompt when the caller gave none; HH-RLHF dialogue text without a template."""
        msgs = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]
        if msgs[-1]["role"] == "assistant":
            raise ServeRequestError("the last message is the assistant's; end with a user message for the reply",
                                    f"messages.{len(msgs) - 1}.role")
        system = self.decoding.system_prompt
        if system and not any(m["role"] == "system" for m in msgs):
            msgs = [{"role": "system", "content": system}] + msgs
        if len(msgs) == 1 or (len(msgs) == 2 and msgs[0]["role"] == "system"):  # exactly the sweep's prompt
            return chat_prompt(self.tokenizer, msgs[-1]["content"], msgs[0]["content"] if len(msgs) == 2 else None)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
        system_text = " ".join(m["content"] for m in msgs if m["role"] == "system")
        turns = "".join(f"{HUMAN_TURN if m['role'] == 'user' else ASSISTANT_TURN} {m['content']}"
                        for m in msgs if m["role"] != "system")
        return dialogue_prompt(turns.strip(), system_text or None)

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]

    def decoding_of(self, req: _Sampling) -> Decoding:
        d = self.decoding
        max_new = req.max_completion_tokens or req.max_tokens or d.max_new_tokens
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        if len(stops) > MAX_STOPS:
            raise ServeRequestError(f"stop has {len(stops)} strings; give at most {MAX_STOPS}", "stop")
        stop_turn = reply_stop(self.tokenizer)  # a model without a chat template: its reply ends at the next turn
        temperature = req.temperature if req.temperature is not None else (d.temperature if d.do_sample else 0.0)
        seed = req.seed if req.seed is not None else (d.seed if d.do_sample and req.temperature is None else None)
        min_new = req.min_tokens if req.min_tokens is not None else min(d.min_new_tokens, max_new)
        if min_new > max_new:
            raise ServeRequestError(f"min_tokens = {min_new} exceeds max_tokens = {max_new}; lower it", "min_tokens")
        return Decoding(max_new_tokens=max_new, min_new_tokens=min_new, temperature=temperature,
                        top_p=req.top_p if req.top_p is not None else d.top_p, seed=seed,
                        stop=[s for s in stops if s] + ([stop_turn] if stop_turn else []))

    def scores(self, prompt: str, replies: Sequence[str]) -> list[dict[str, float | None]]:
        """Each reply's value by the workspace's scorers (raw, as the store keeps them)."""
        from .scorers import get_scorer  # reward models load on first use

        out: list[dict[str, float | None]] = [{} for _ in replies]
        for spec in self.ws.manifest.values:
            vals = get_scorer(spec.scorer).score([prompt] * len(replies), list(replies))
            for row, x in zip(out, vals):
                row[spec.name] = _finite_or_none(float(x))
        return out


    def reply(self, message: str, weights: Sequence[float], timeout: float = 600) -> str:
        """One chat message at `weights` through the engine, with the workspace's decoding; blocks for the text
        (the app's "Try it" box: no HTTP, the same engine and model in memory)."""
        import threading

        w = self._check(dict(zip(self.values, map(float, weights))), "weights")
        dec = self.decoding_of(ChatCompletionRequest(model="mva", messages=[ChatMessage(role="user", content=message)]))
        ids = self.ids(self.chat_text([ChatMessage(role="user", content=message)]))
        finished = threading.Event()
        out: list[Event] = []

        def on_event(ev: Event) -> None:
            if ev.kind != "token":
                out.append(ev)
                finished.set()

        req = self.engine.submit(EngineRequest(prompt_ids=ids, weights=w, max_new_tokens=dec.max_new_tokens,
                                               min_new_tokens=dec.min_new_tokens, temperature=dec.temperature,
                                               top_p=dec.top_p, seed=dec.seed, stop=dec.stop, on_event=on_event))
        if not finished.wait(timeout):
            req.cancel()
            raise ServeRequestError(f"no reply within {timeout:.0f} s; try a shorter max_new_tokens", None, 504)
        if out[0].kind == "error":
            raise RuntimeError(f"generation failed: {out[0].text}")
        return out[0].text


def request_snippets(workspace_root: str | Path, method: str, values: Sequence[str], weights: Sequence[float],
                 message: str, base_url: str = "http://127.0.0.1:8000/v1") -> dict[str, str]:
    """How to ask a server of this workspace for this point: the command, curl, the openai client, the model
    name form."""
    point = {v: round(float(x), 4) for v, x in zip(values, weights)}
    name = MODEL_PREFIX + ",".join(f"{v}={x:g}" for v, x in point.items())
    body = json.dumps({"model": method, "messages": [{"role": "user", "content": message}],
                       "mva": {"weights": point}})
    return {
        "serve": f"python -m mva_core serve --workspace {workspace_root} --method {method}",
        "curl": f"curl {base_url}/chat/completions -H 'Content-Type: application/json' \\\n"
                f"  -d '{body.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}'",
        "openai": ("from openai import OpenAI\n"
                   f"client = OpenAI(base_url={base_url!r}, api_key='unused on localhost')\n"
                   f"r = client.chat.completions.create(model={method!r}, messages=[{{'role': 'user', "
                   f"'content': {message!r}}}],\n"
                   f"                                   extra_body={{'mva': {{'weights': {point!r}}}}})\n"
                   "print(r.choices[0].message.content)"),
        "model": name,
    }


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# ---- Running a request through the engine ----
class _Choices:
    """n engine requests of one HTTP request; their events land in one asyncio queue, tagged by choice."""

    def __init__(self, dial: Dial, prompt_ids: list[int], weights: np.ndarray, dec: Decoding, n: int):
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        dial.engine.check_fits(len(prompt_ids), dec.max_new_tokens)
        self.requests = [
            EngineRequest(prompt_ids=prompt_ids, weights=weights, max_new_tokens=dec.max_new_tokens,
                          min_new_tokens=dec.min_new_tokens, temperature=dec.temperature, top_p=dec.top_p,
                          seed=seed_of(dec.seed, i) if n > 1 else dec.seed, stop=dec.stop,
                          on_event=lambda ev, i=i: loop.call_soon_threadsafe(self.queue.put_nowait, (i, ev)))
            for i in range(n)]
        for r in self.requests:
            dial.engine.submit(r)

    def cancel(self) -> None:
        for r in self.requests:
            r.cancel()

    async def events(self) -> AsyncIterator[tuple[int, Event]]:
        open_ = len(self.requests)
        while open_:
            i, ev = await self.queue.get()
            if ev.kind in ("done", "error"):
                open_ -= 1
            yield i, ev


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def create_app(dial: Dial, token: str | None = None):  # -> fastapi.FastAPI (imported late: only the server needs it)
    """The FastAPI app over `dial`; `token` (MVA_AUTH_TOKEN when required) must come as `Authorization: Bearer`."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="MVA Explorer: serve the dial", docs_url=None, redoc_url=None)
    app.state.dial = dial

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if token is not None and request.url.path != "/health":
            header = request.headers.get("authorization", "")
            given = header[len("Bearer "):] if header.startswith("Bearer ") else None
            if not token_matches(given, token):
                return JSONResponse(error_body(
                    "missing or wrong API key: send MVA_AUTH_TOKEN as `Authorization: Bearer <token>` (the openai "
                    "client's api_key)", None, "invalid_api_key"), status_code=401)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if err.get("type") == "json_invalid":
            return JSONResponse(error_body(f"the body is not valid JSON ({err.get('msg', '')}); send a JSON object "
                                           "as the OpenAI API documents", None, "invalid_json"), status_code=400)
        param = ".".join(loc) or None
        msg = err.get("msg", "invalid value")
        fix = "; remove it" if err.get("type") == "extra_forbidden" else "; see the OpenAI API reference for it"
        return JSONResponse(error_body(f"{param or 'body'}: {msg}{fix}", param, err.get("type")), status_code=400)

    @app.exception_handler(ServeRequestError)
    async def refused(request: Request, exc: ServeRequestError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.param, exc.code), status_code=exc.status)

    @app.exception_handler(PromptTooLongError)
    async def too_long(request: Request, exc: PromptTooLongError) -> JSONResponse:
        return JSONResponse(error_body(str(exc), "max_tokens", "context_length_exceeded"), status_code=400)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "running": dial.engine.running, "pid": os.getpid()}  # pid: which replica answered

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        rows, front = await run_in_threadpool(dial.candidates)
        data = [{"id": dial.method, "object": "model", "created": dial.created, "owned_by": "mva-explorer",
                 "mva": {"values": dial.values, "C": dial.C, "method": dial.method,
                         "how": f"send mva.weights, or model {MODEL_PREFIX}VALUE=w,…, or a candidate id"}}]
        data += [{"id": cid, "object": "model", "created": dial.created, "owned_by": "mva-explorer",
                  "mva": {"method": dial.method, **rows[cid]}} for cid in front]
        return {"object": "list", "data": data}

    async def run(req: _Sampling, prompt_text: str, user_prompt: str, chat: bool, request: Request):
        weights = dial.weights_of(req.model, req.mva)
        dec = dial.decoding_of(req)
        prompt_ids = dial.ids(prompt_text)
        if not prompt_ids:
            raise ServeRequestError("the prompt is empty; send some text", "messages" if chat else "prompt")
        choices = _Choices(dial, prompt_ids, weights, dec, req.n)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        point = {"weights": dict(zip(dial.values, map(float, weights)))}
        usage_of = lambda done: {"prompt_tokens": len(prompt_ids),  # noqa: E731
                                 "completion_tokens": sum(e.completion_tokens for e in done.values()),
                                 "total_tokens": len(prompt_ids) + sum(e.completion_tokens for e in done.values())}
        kind = "chat.completion" if chat else "text_completion"

        def failed(done: dict[int, Event]) -> None:
            bad = next((e for e in done.values() if e.kind == "error"), None)
            if bad is not None:
                raise RuntimeError(f"generation failed: {bad.text}")

        if not req.stream:
            done: dict[int, Event] = {}

            async def cancel_on_disconnect() -> None:
                """A client that goes away before its reply (a closed connection, a client timeout) frees its
                rows at the next decoding step instead of decoding to max_tokens for nobody."""
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                choices.cancel()

            watcher = asyncio.create_task(cancel_on_disconnect())
            try:
                async for i, ev in choices.events():
                    if ev.kind != "token":
                        done[i] = ev
            finally:
                watcher.cancel()
                choices.cancel()  # a failure before the end: its rows leave at the next step
            failed(done)
            texts = [done[i].text for i in range(req.n)]
            if req.mva is not None and req.mva.score:
                point["scores"] = await run_in_threadpool(dial.scores, user_prompt, texts)
            body = {"id": rid, "object": kind, "created": created, "model": req.model,
                    "choices": [({"index": i, "message": {"role": "assistant", "content": texts[i]},
                                  "finish_reason": done[i].finish_reason, "logprobs": None} if chat else
                                 {"index": i, "text": texts[i], "finish_reason": done[i].finish_reason,
                                  "logprobs": None}) for i in range(req.n)],
                    "usage": usage_of(done), "mva": point}
            return JSONResponse(body)

        chunk_kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(i: int, text: str | None, reason: str | None, first: bool = False) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else (
                    {"content": text} if text else {})
                c: dict[str, Any] = {"index": i, "delta": delta, "finish_reason": reason, "logprobs": None}
            else:
                c = {"index": i, "text": text or "", "finish_reason": reason, "logprobs": None}
            return {"id": rid, "object": chunk_kind, "created": created, "model": req.model, "choices": [c]}

        async def stream() -> AsyncIterator[str]:
            done: dict[int, Event] = {}
            try:
                if chat:
                    for i in range(req.n):
                        yield _sse(chunk(i, None, None, first=True))
                async for i, ev in choices.events():
                    if ev.kind == "token" and ev.text:
                        yield _sse(chunk(i, ev.text, None))
                    elif ev.kind == "done":
                        done[i] = ev
                        yield _sse(chunk(i, None, ev.finish_reason))
                    elif ev.kind == "error":
                        done[i] = ev
                        yield _sse(error_body(f"generation failed: {ev.text}", None, "generation_failed",
                                              "server_error"))
                extra: dict[str, Any] = {}
                if req.mva is not None and req.mva.score and all(e.kind == "done" for e in done.values()):
                    extra["mva"] = {**point, "scores": await run_in_threadpool(
                        dial.scores, user_prompt, [done[i].text for i in range(req.n)])}
                if req.stream_options is not None and req.stream_options.include_usage:
                    extra["usage"] = usage_of(done)
                if extra:
                    yield _sse({"id": rid, "object": chunk_kind, "created": created, "model": req.model,
                                "choices": [], **extra})
                yield "data: [DONE]\n\n"
            finally:  # the client went away (the generator is closed) or the stream ended: free its rows
                choices.cancel()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def with_request(endpoint):  # PEP 563 leaves "Request" a string FastAPI resolves in module globals, where it is
        endpoint.__annotations__["request"] = Request  # not (fastapi is imported here, late): give it the class
        return endpoint

    @app.post("/v1/chat/completions")
    @with_request
    async def chat_completions(req: ChatCompletionRequest, request: Request):
        users = [m.text() for m in req.messages if m.role == "user"]
        return await run(req, dial.chat_text(req.messages), users[-1] if users else "", True, request)

    @app.post("/v1/completions")
    @with_request
    async def completions(req: CompletionRequest, request: Request):
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(prompts) != 1:
            raise ServeRequestError(f"prompt is a list of {len(prompts)} prompts; send one prompt per request "
                                    "(n gives several replies)", "prompt")
        return await run(req, prompts[0], prompts[0], False, request)

    return app


# ---- Starting it ----
def load_dial(workspace: str | Path, method: str | None = None) -> Dial:
    """Load the workspace's base model and `method`'s value vectors once, start the engine: a Dial to serve."""
    from .sweep import Evaluator  # loads torch and the model

    ws = Workspace(workspace, read_only=True)
    method = method or _default_method(ws)
    ev = Evaluator(ws, method)
    if ev.kind.preference_in_prompt or len(ev.vectors) != len(ws.value_names):
        raise WorkspaceError(f"method {method!r} is not one value vector per value (it is {ev.kind.name}); serve a "
                             f"method whose weights compose vectors, e.g. one of {_weight_methods(ws)}")
    engine = ServeEngine(ev.model, ev.base.tokenizer)
    return Dial(ws, method, engine, ev.base.tokenizer)


def _weight_methods(ws: Workspace) -> list[str]:
    return [m.name for m in ws.compared_methods() if m.kind.continuous and not m.kind.preference_in_prompt
            and len(m.vector_dirs) == len(ws.value_names)]


def _default_method(ws: Workspace) -> str:
    methods = _weight_methods(ws)
    if not methods:
        raise WorkspaceError(f"{ws.root} has no method with one value vector per value to serve; train one with "
                             "`python -m mva_core train --method mva ...`")
    return "mva" if "mva" in methods else methods[0]


def serve(workspace: str | Path, method: str | None = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted, in this process. Bound beyond loopback, MVA_AUTH_TOKEN is required (refused to start
    without it). Several replicas: `serve_ray.serve_replicas`."""
    import uvicorn  # the HTTP server: imported when serving

    token = required_token(host)  # raises TokenNotConfiguredError when exposed without a token
    dial = load_dial(workspace, method)
    where = "loopback only" if is_loopback(host) and token is None else "Bearer MVA_AUTH_TOKEN required"
    print(f"serving {dial.method} of {dial.ws.root} ({', '.join(dial.values)} in [0, {dial.C:g}]) at "
          f"http://{host}:{port}/v1 ({where})", flush=True)
    uvicorn.run(create_app(dial, token), host=host, port=port, log_level="warning")
