"""Chat models for autointerp behind one small interface: an OpenAI-compatible HTTP endpoint or an in-process
transformers model, both wrapped by an on-disk cache so a rerun never pays for the same prompt twice.

A backend takes a list of chat prompts (each a list of {"role", "content"} messages) and returns one `Reply`
per prompt, in order. Failures are replies with a status, never exceptions, so one bad prompt cannot lose
the answers to all the others; the caller decides what a failed reply means.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from saeseeds.errors import BackendError  # noqa: F401 (raised here; importable from here too)

Messages = list[dict[str, str]]
OK, TIMEOUT, HTTP_ERROR, BAD_RESPONSE, REFUSED, ERROR = "ok", "timeout", "http_error", "bad_response", "refused", "error"
# Statuses worth another try: the server was busy, slow or briefly broken. A 4xx other than 408/429 is not.
_RETRYABLE_HTTP = {408, 409, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Reply:
    """One prompt's answer: `text` when status is "ok", else None and `detail` says what went wrong."""

    text: str | None
    status: str = OK
    detail: str = ""
    attempts: int = 1
    cached: bool = False


class Backend(Protocol):
    identity: str
    """What the answers depend on (endpoint and model, or model source); part of every cache key."""

    def generate(self, prompts: list[Messages], *, max_tokens: int) -> list[Reply]: ...


@dataclass
class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, a hosted API), greedy by default."""

    base_url: str
    model: str
    api_key_env: str | None = None
    """Name of the environment variable holding the API key; the key itself never enters config or cache."""
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    """First retry waits this long, each next one twice as long (or what a Retry-After header asks, capped)."""
    temperature: float = 0.0
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("saeseeds.autointerp.llm"))

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise BackendError(f"autointerp.backend.base_url {self.base_url!r} is not an http(s) URL")
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0:
            raise BackendError(
                f"autointerp.backend: concurrency={self.concurrency}, max_retries={self.max_retries}, "
                f"timeout_s={self.timeout_s} must be >= 1, >= 0 and > 0"
            )
        self._key = None
        if self.api_key_env:
            self._key = os.environ.get(self.api_key_env)
            if not self._key:
                raise BackendError(f"autointerp.backend.api_key_env: environment variable {self.api_key_env} is not set")
        self.url = self.base_url.rstrip("/") + "/chat/completions"

    @property
    def identity(self) -> str:
        # Not the URL: the same served model answers the same prompts wherever the server runs next time.
        return f"openai:{self.model}:t={self.temperature}"

    def generate(self, prompts: list[Messages], *, max_tokens: int) -> list[Reply]:
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(lambda p: self._one(p, max_tokens), prompts))

    def _one(self, messages: Messages, max_tokens: int) -> Reply:
        body = json.dumps(
            {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": self.temperature}
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        reply = Reply(None, ERROR, "not sent")
        for attempt in range(1, self.max_retries + 2):
            reply, retryable, retry_after = self._post(body, headers)
            reply = Reply(reply.text, reply.status, reply.detail, attempts=attempt)
            if not retryable or attempt > self.max_retries:
                break
            wait = self.backoff_s * 2 ** (attempt - 1)
            if retry_after is not None:
                wait = min(max(wait, retry_after), 60.0)
            self.log.warning("%s: %s (%s); retry %d/%d in %.1f s", self.url, reply.status, reply.detail, attempt, self.max_retries, wait)
            time.sleep(wait)
        return reply

    def _post(self, body: bytes, headers: dict[str, str]) -> tuple[Reply, bool, float | None]:
        """Returns (reply, worth retrying, seconds a Retry-After header asks for) of one request."""
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = f"HTTP {err.code}: {err.read()[:200].decode(errors='replace')}"
            retry_after = _seconds(err.headers.get("Retry-After")) if err.headers else None
            return Reply(None, HTTP_ERROR, detail), err.code in _RETRYABLE_HTTP, retry_after
        except (TimeoutError, urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(err, TimeoutError) or isinstance(reason, TimeoutError):
                return Reply(None, TIMEOUT, f"no answer within {self.timeout_s} s"), True, None
            return Reply(None, HTTP_ERROR, f"connection failed: {reason}"), True, None
        reply = parse_chat_response(raw)
        return reply, reply.status == BAD_RESPONSE, None


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


def parse_chat_response(raw: bytes) -> Reply:
    """Returns the Reply in an OpenAI chat-completions body: the first choice's message content."""
    try:
        data = json.loads(raw)
        message = data["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        return Reply(None, BAD_RESPONSE, f"not a chat completion ({type(err).__name__}: {raw[:120]!r})")
    if not isinstance(message, dict):
        return Reply(None, BAD_RESPONSE, f"message is not an object: {message!r:.120}")
    if message.get("refusal"):
        return Reply(None, REFUSED, str(message["refusal"])[:200])
    content = message.get("content")
    if not isinstance(content, str):
        return Reply(None, BAD_RESPONSE, f"message content is {type(content).__name__}, not text")
    return Reply(content)


class TransformersBackend:
    """An in-process chat model (default: the embedded SmolLM2-135M-Instruct), greedy, batched with left padding.

    The model is loaded on the first prompt, so a rerun answered entirely from the cache never loads it.
    """

    def __init__(self, model=None, tokenizer=None, *, source: str, revision: str = "main", dtype: str = "float32",
                 device: str = "cpu", batch_size: int = 8):
        self.source, self.revision, self.dtype, self.device = source, revision, dtype, device
        self.batch_size = int(batch_size)
        self.model, self.tokenizer = model, tokenizer
        self.identity = f"transformers:{source}"
        if tokenizer is not None:
            self._check_chat_template()

    @classmethod
    def load(cls, source: str, **settings):
        """Returns the backend for `source` (loaded lazily, as saeseeds.activations.models.load_model loads subject models)."""
        return cls(source=source, **settings)

    def _check_chat_template(self) -> None:
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise BackendError(f"autointerp.backend.model {self.source!r}: the tokenizer has no chat template (not an instruct model)")

    def _ensure_loaded(self) -> None:
        if self.model is None:
            from saeseeds.activations.models import load_model

            self.model, self.tokenizer = load_model(self.source, revision=self.revision, dtype=self.dtype, device=self.device)
            self._check_chat_template()

    def generate(self, prompts: list[Messages], *, max_tokens: int) -> list[Reply]:
        import torch

        if not prompts:
            return []
        self._ensure_loaded()
        texts = [self.tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
        ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        device = next(self.model.parameters()).device
        out: list[Reply | None] = [None] * len(ids)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            width = max(len(ids[i]) for i in chunk)
            batch = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in chunk], device=device)
            mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in chunk], device=device)
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=batch, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False, pad_token_id=pad
                )
            for row, i in zip(gen[:, width:], chunk):
                out[i] = Reply(self.tokenizer.decode(row, skip_special_tokens=True))
        return out  # type: ignore[return-value]


class ReplyCache:
    """Successful replies in one SQLite file, keyed by sha256 of (backend identity, prompt, max_tokens).

    Failures are not stored, so a rerun retries exactly what failed. SQLite's own locking lets the jobs of
    several sites share one file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        self._db.commit()

    @staticmethod
    def key(identity: str, messages: Messages, max_tokens: int) -> str:
        blob = json.dumps({"backend": identity, "messages": messages, "max_tokens": max_tokens}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT text FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put_many(self, items: list[tuple[str, str]]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO replies (key, text) VALUES (?, ?)", items)
            self._db.commit()

    def close(self) -> None:
        self._db.close()


@dataclass
class CachedBackend:
    """A backend whose answers are looked up in `cache` first; only misses reach the model."""

    backend: Any
    cache: ReplyCache
    hits: int = 0
    misses: int = 0

    @property
    def identity(self) -> str:
        return self.backend.identity

    def generate(self, prompts: list[Messages], *, max_tokens: int) -> list[Reply]:
        keys = [ReplyCache.key(self.identity, p, max_tokens) for p in prompts]
        out: list[Reply | None] = []
        todo: list[int] = []
        for i, key in enumerate(keys):
            text = self.cache.get(key)
            out.append(Reply(text, cached=True) if text is not None else None)
            if text is None:
                todo.append(i)
        self.hits += len(prompts) - len(todo)
        self.misses += len(todo)
        fresh = self.backend.generate([prompts[i] for i in todo], max_tokens=max_tokens) if todo else []
        for i, reply in zip(todo, fresh):
            out[i] = reply
        self.cache.put_many([(keys[i], r.text) for i, r in zip(todo, fresh) if r.status == OK and r.text is not None])
        return out  # type: ignore[return-value]


def make_backend(settings: dict[str, Any], *, log: logging.Logger | None = None):
    """Returns the backend `autointerp.backend` describes: kind `openai` (HTTP) or `transformers` (in process)."""
    settings = dict(settings)
    kind = settings.pop("kind", None)
    if kind == "openai":
        known = {"base_url", "model", "api_key_env", "concurrency", "timeout_s", "max_retries", "backoff_s", "temperature"}
        extra = set(settings) - known
        if extra or "base_url" not in settings or "model" not in settings:
            raise BackendError(f"autointerp.backend (kind openai): needs base_url and model; unknown keys {sorted(extra)}")
        return OpenAIBackend(**settings, **({"log": log} if log else {}))
    if kind == "transformers":
        known = {"model", "revision", "dtype", "device", "batch_size"}
        extra = set(settings) - known
        if extra:
            raise BackendError(f"autointerp.backend (kind transformers): unknown keys {sorted(extra)}")
        return TransformersBackend.load(settings.pop("model", "embedded:smollm2-135m"), **settings)
    raise BackendError(f"autointerp.backend.kind {kind!r} is not 'openai' or 'transformers'")
