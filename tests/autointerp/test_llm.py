"""Chat backends against a real OpenAI-compatible server on loopback: answers, failures, retries, cache."""

import time

import pytest
from openai_server import API_KEY, FLAKY_FAILURES, KEYWORD, SLOW_SECONDS, Server

from saeseeds.autointerp.llm import (
    BAD_RESPONSE, HTTP_ERROR, OK, REFUSED, TIMEOUT, BackendError, CachedBackend, OpenAIBackend, ReplyCache,
    TransformersBackend, make_backend, parse_chat_response,
)

PROMPT = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def server(smollm):
    model, tokenizer = smollm
    srv = Server(TransformersBackend(model, tokenizer, source="embedded:smollm2-135m"))
    yield srv
    srv.close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("SAESEEDS_TEST_KEY", API_KEY)
    return "SAESEEDS_TEST_KEY"


def client(server, key, model, **kw):
    return OpenAIBackend(base_url=server.url, model=model, api_key_env=key, backoff_s=0.01, **kw)


def test_real_model_answers_through_http_with_the_api_key(server, key, torch_one_thread):
    reply = client(server, key, "smollm2-135m").generate([PROMPT], max_tokens=8)[0]
    assert reply.status == OK and reply.text.strip() and reply.attempts == 1
    sent = server.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"] == {"model": "smollm2-135m", "messages": PROMPT, "max_tokens": 8, "temperature": 0.0}
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"


def test_wrong_api_key_is_an_http_error_without_retries(server, monkeypatch):
    monkeypatch.setenv("WRONG_KEY", "nope")
    reply = OpenAIBackend(base_url=server.url, model="keyword", api_key_env="WRONG_KEY", backoff_s=0.01).generate([PROMPT], max_tokens=8)[0]
    assert (reply.status, reply.attempts) == (HTTP_ERROR, 1) and "401" in reply.detail


def test_malformed_body_is_retried_then_reported(server, key):
    before = server.count("malformed")
    reply = client(server, key, "malformed", max_retries=2).generate([PROMPT], max_tokens=8)[0]
    assert (reply.status, reply.text, reply.attempts) == (BAD_RESPONSE, None, 3)
    assert "upstream proxy error" in reply.detail
    assert server.count("malformed") - before == 3


def test_refusal_and_missing_content(server, key):
    refused, empty = (client(server, key, m, max_retries=0).generate([PROMPT], max_tokens=8)[0] for m in ("refuse", "no-content"))
    assert refused.status == REFUSED and "can't help" in refused.detail
    assert empty.status == BAD_RESPONSE and empty.text is None


def test_timeout_gives_up_after_the_retries(server, key):
    start = time.perf_counter()
    reply = client(server, key, "slow", timeout_s=0.3, max_retries=1).generate([PROMPT], max_tokens=8)[0]
    assert (reply.status, reply.attempts) == (TIMEOUT, 2)
    assert time.perf_counter() - start < 2 * SLOW_SECONDS


def test_503_is_retried_until_it_succeeds(server, key):
    prompt = [{"role": "user", "content": f"Explanation: the word {KEYWORD}.\n\nText: the {KEYWORD} said\n\nIs the feature active in this text? Answer Yes or No."}]
    reply = client(server, key, "flaky", max_retries=FLAKY_FAILURES).generate([prompt], max_tokens=8)[0]
    assert (reply.status, reply.text, reply.attempts) == (OK, "Yes.", FLAKY_FAILURES + 1)


def test_400_is_not_retried(server, key):
    reply = client(server, key, "bad-request", max_retries=3).generate([PROMPT], max_tokens=8)[0]
    assert (reply.status, reply.attempts) == (HTTP_ERROR, 1) and "unknown parameter" in reply.detail


def test_unreachable_server_is_reported(key):
    reply = OpenAIBackend(base_url="http://127.0.0.1:9/v1", model="m", api_key_env=key, max_retries=1, backoff_s=0.01).generate([PROMPT], max_tokens=4)[0]
    assert (reply.status, reply.attempts) == (HTTP_ERROR, 2) and "connection failed" in reply.detail


def test_requests_run_concurrently(server, key):
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(6)]
    start = time.perf_counter()
    replies = client(server, key, "slow", timeout_s=10, concurrency=6).generate(prompts, max_tokens=8)
    elapsed = time.perf_counter() - start
    assert [r.status for r in replies] == [OK] * 6
    assert elapsed < 3 * SLOW_SECONDS  # one after another would take 6 x SLOW_SECONDS


def test_rerun_answers_from_the_cache_and_retries_only_failures(server, key, tmp_path):
    prompts = [[{"role": "user", "content": f"Explanation: x\n\nText: {w}\n\nIs the feature active in this text? Answer Yes or No."}]
               for w in ("the LORD", "a cat", "LORD God")]
    first = CachedBackend(client(server, key, "keyword"), ReplyCache(tmp_path / "cache.sqlite"))
    before = server.count("keyword")
    replies = first.generate(prompts, max_tokens=8)
    assert [r.text for r in replies] == ["Yes.", "No.", "Yes."] and server.count("keyword") - before == 3
    assert (first.hits, first.misses) == (0, 3)
    second = CachedBackend(client(server, key, "keyword"), ReplyCache(tmp_path / "cache.sqlite"))
    again = second.generate(prompts, max_tokens=8)
    assert [r.text for r in again] == ["Yes.", "No.", "Yes."] and all(r.cached for r in again)
    assert server.count("keyword") - before == 3 and (second.hits, second.misses) == (3, 0)
    # Another max_tokens or model is another question; failures are never cached.
    second.generate(prompts[:1], max_tokens=9)
    assert server.count("keyword") - before == 4
    broken = CachedBackend(client(server, key, "malformed", max_retries=0), ReplyCache(tmp_path / "cache.sqlite"))
    n = server.count("malformed")
    broken.generate(prompts[:1], max_tokens=8)
    broken.generate(prompts[:1], max_tokens=8)
    assert server.count("malformed") - n == 2


def test_parse_chat_response_cases():
    assert parse_chat_response(b'{"choices": [{"message": {"content": "hi"}}]}').text == "hi"
    assert parse_chat_response(b"not json").status == BAD_RESPONSE
    assert parse_chat_response(b'{"choices": [{"message": {"content": null}}]}').status == BAD_RESPONSE
    assert parse_chat_response(b'{"choices": [{"message": {"content": null, "refusal": "no"}}]}').status == REFUSED
    assert parse_chat_response(b'{"error": "x"}').status == BAD_RESPONSE


def test_settings_errors_name_the_key(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(BackendError, match="NO_SUCH_KEY_VAR"):
        OpenAIBackend(base_url="http://x/v1", model="m", api_key_env="NO_SUCH_KEY_VAR")
    with pytest.raises(BackendError, match="base_url"):
        OpenAIBackend(base_url="x/v1", model="m")
    with pytest.raises(BackendError, match="kind"):
        make_backend({"kind": "magic"})
    with pytest.raises(BackendError, match="unknown keys"):
        make_backend({"kind": "openai", "base_url": "http://x/v1", "model": "m", "temprature": 0})


def test_in_process_backend_loads_its_model_only_when_a_prompt_misses_the_cache(tmp_path):
    backend = make_backend({"kind": "transformers", "model": "embedded:smollm2-135m", "batch_size": 4})
    cache = ReplyCache(tmp_path / "c.sqlite")
    cache.put_many([(ReplyCache.key(backend.identity, PROMPT, 8), "Hello!")])
    cached = CachedBackend(backend, cache)
    assert [r.text for r in cached.generate([PROMPT], max_tokens=8)] == ["Hello!"]
    assert backend.model is None and (cached.hits, cached.misses) == (1, 0)
