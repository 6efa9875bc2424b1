"""Test fixture, not part of saeseeds: a small but real OpenAI-compatible HTTP server on loopback.

llama-cpp-python (the usual PyPI server) ships only as a source distribution that needs a C++ build, so the
tests serve `POST /v1/chat/completions` with the standard library instead. The `model` field picks what
answers:

- `smollm2-135m`: real generation by the in-process backend (the embedded SmolLM2-135M-Instruct);
- `keyword`: a deterministic rule-based "model" that explains every latent as the word in KEYWORD and
  answers detection prompts by whether each text contains it, so scores can be checked by hand;
- `junk-detection`: explains like `keyword` but answers every detection prompt with an unusable sentence;
- `malformed`, `refuse`, `no-content`, `slow`, `flaky`, `bad-request`: the failures a real server shows
  (undecodable body, an API refusal, a reply without content, no answer within the client's timeout,
  503 with Retry-After for the first FLAKY_FAILURES requests of each prompt, a 400).

Every request is recorded (path, headers, body) so tests can count what reached the server.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEYWORD = "LORD"
API_KEY = "test-key"
FLAKY_FAILURES = 2
SLOW_SECONDS = 1.5


class Server:
    """A running loopback server; `url` is its base URL (…/v1), `requests` what it received."""

    def __init__(self, generator=None):
        self.generator = generator  # a saeseeds.autointerp.llm backend for model "smollm2-135m"
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.flaky_seen: dict[str, int] = {}
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def count(self, model: str | None = None) -> int:
        with self.lock:
            return sum(1 for r in self.requests if model is None or r["body"].get("model") == model)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def keyword_answer(messages: list[dict]) -> str:
    """The `keyword` model: an explanation naming KEYWORD, or per text 1 if it contains KEYWORD."""
    user = messages[-1]["content"]
    if user.startswith("Explanation:"):
        texts = re.findall(r"^Text(?: \d+)?: (.*)$", user, flags=re.MULTILINE)
        answers = [int(KEYWORD in t) for t in texts]
        if len(texts) == 1 and "Answer Yes or No" in user:
            return "Yes." if answers[0] else "No."
        return "[" + ", ".join(map(str, answers)) + "]"
    return f"Explanation: the word {KEYWORD}."


class _Handler(BaseHTTPRequestHandler):
    server_state: Server

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _completion(self, content: str | None, **message) -> bytes:
        body = {"id": "x", "object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content, **message}}]}
        return json.dumps(body).encode()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        state = self.server_state
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with state.lock:
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path != "/v1/chat/completions":
            return self._send(404, b'{"error": "not found"}')
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._send(401, b'{"error": "bad api key"}')
        model, messages = body.get("model"), body.get("messages")
        if model == "smollm2-135m":
            reply = state.generator.generate([messages], max_tokens=int(body.get("max_tokens", 16)))[0]
            return self._send(200, self._completion(reply.text))
        if model == "keyword":
            return self._send(200, self._completion(keyword_answer(messages)))
        if model == "junk-detection":  # explains like `keyword`, then answers detection prompts with no usable answer
            text = keyword_answer(messages)
            return self._send(200, self._completion(text if text.startswith("Explanation") else "Maybe, hard to say."))
        if model == "malformed":
            return self._send(200, b"<html>upstream proxy error</html>")
        if model == "refuse":
            return self._send(200, self._completion(None, refusal="I can't help with that."))
        if model == "no-content":
            return self._send(200, b'{"choices": []}')
        if model == "slow":
            time.sleep(SLOW_SECONDS)
            return self._send(200, self._completion("Explanation: late."))
        if model == "flaky":
            key = json.dumps(messages, sort_keys=True)
            with state.lock:
                seen = state.flaky_seen[key] = state.flaky_seen.get(key, 0) + 1
            if seen <= FLAKY_FAILURES:
                return self._send(503, b'{"error": "overloaded"}', {"Retry-After": "0"})
            return self._send(200, self._completion(keyword_answer(messages)))
        if model == "bad-request":
            return self._send(400, b'{"error": "unknown parameter"}')
        return self._send(404, json.dumps({"error": f"model {model!r} not served"}).encode())
