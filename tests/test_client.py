"""The chat client against real HTTP servers on loopback: retries, timeouts, malformed bodies, cache, keys."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fineclass import FineclassError, LabelSpec
from fineclass.client import ChatResult, Endpoint, chat_many
from fineclass.protocol import InvalidAnswer, build_messages, format_answer, parse_answer

SPEC = LabelSpec(kind="single", classes=["0", "1"], names={"0": "negative", "1": "positive"}, value_type="int")
FLOURISH = LabelSpec(kind="dimlevel", classes=["happiness", "anxiety", "belief in god"])


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 whose answers a test scripts: ``respond(state, request) -> reply``.

    ``reply`` is ``(status, headers, body)`` plus an optional delay in seconds before answering. The server
    counts requests, remembers the Authorization headers it saw and the most requests in flight at once.
    """

    def __init__(self, respond):
        self.respond = respond
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth: list[str | None] = []
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                with outer.lock:
                    outer.requests += 1
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    outer.auth.append(self.headers.get("Authorization"))
                    text = body["messages"][-1]["content"]
                    outer.seen[text] = outer.seen.get(text, 0) + 1
                    nth = outer.seen[text]
                busy = True
                try:
                    reply = outer.respond(body, text, nth)
                    status, headers, payload = reply[:3]
                    if len(reply) > 3:
                        time.sleep(reply[3])
                    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    with outer.lock:  # done before the answer leaves: the client may send its next request at once
                        outer.in_flight -= 1
                        busy = False
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    if busy:
                        with outer.lock:
                            outer.in_flight -= 1

        class S(ThreadingHTTPServer):
            daemon_threads = True

        self.httpd = S(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(content: str, prompt_tokens: int = 10, completion_tokens: int = 3) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


def sentiment(text: str) -> str:
    return json.dumps({"label": 1 if "good" in text else 0, "confidence": 0.9})


def ok(body, text, nth):
    return 200, {"Content-Type": "application/json"}, completion(sentiment(text))


@pytest.fixture
def server_factory():
    servers = []

    def make(respond):
        s = ScriptedServer(respond)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def convs(texts):
    return [build_messages(SPEC, t) for t in texts]


TEXTS = ["a good film", "a bad film", "good acting, good plot", "dull"]


# ------------------------------------------------------------------------------------------ bad input
def test_url_without_scheme_is_rejected():
    with pytest.raises(FineclassError) as e:
        Endpoint("127.0.0.1:8000/v1", "m", key_env=None)
    assert e.value.argument == "url" and "http://" in str(e.value)
    with pytest.raises(FineclassError) as e:
        Endpoint("api.openai.com/v1", "gpt-4o")
    assert e.value.argument == "url"
    with pytest.raises(FineclassError):
        Endpoint("ftp://host/v1", "m", key_env=None)
    assert Endpoint("http://h:1/v1", "m", key_env=None).chat_url == "http://h:1/v1/chat/completions"
    assert Endpoint("http://h:1", "m", key_env=None).chat_url == "http://h:1/v1/chat/completions"
    assert Endpoint("https://h/x/v1/chat/completions", "m", key_env=None).chat_url == "https://h/x/v1/chat/completions"


def test_missing_key_variable_is_named_and_nothing_is_sent(server_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("FINECLASS_TEST_NO_SUCH_KEY", raising=False)
    s = server_factory(ok)
    ep = Endpoint(s.url, "m", key_env="FINECLASS_TEST_NO_SUCH_KEY", cache=tmp_path)
    with pytest.raises(FineclassError) as e:
        chat_many(ep, convs(TEXTS))
    assert "FINECLASS_TEST_NO_SUCH_KEY" in str(e.value) and e.value.argument == "key_env"
    assert s.requests == 0


def test_key_is_sent_but_never_stored(server_factory, tmp_path, monkeypatch):
    secret = "sk-test-0123456789-do-not-store"
    monkeypatch.setenv("FINECLASS_TEST_KEY", secret)
    s = server_factory(ok)
    ep = Endpoint(s.url, "m", key_env="FINECLASS_TEST_KEY", cache=tmp_path / "cache")
    results, stats = chat_many(ep, convs(TEXTS))
    assert all(r.error is None for r in results)
    assert s.auth == [f"Bearer {secret}"] * len(TEXTS)
    assert secret not in repr(ep) and secret not in json.dumps(ep.__dict__, default=str)
    assert secret not in json.dumps(stats)
    for f in (tmp_path / "cache").rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(encoding="utf-8")
    assert ep.cache_key(convs(TEXTS)[0]) == Endpoint(s.url, "m", key_env="OTHER", cache=False).cache_key(
        convs(TEXTS)[0]
    ), "the key's variable must not change the cache key"
    with pytest.raises(FineclassError) as e:
        Endpoint(s.url, "m", key_env="sk-live-abc")
    assert e.value.argument == "key_env"


def test_redirects_are_not_followed_with_the_key(server_factory, monkeypatch):
    monkeypatch.setenv("FINECLASS_TEST_KEY", "secret")
    target = server_factory(ok)
    s = server_factory(lambda b, t, n: (307, {"Location": target.url + "/chat/completions"}, b""))
    results, _ = chat_many(Endpoint(s.url, "m", key_env="FINECLASS_TEST_KEY", cache=False), convs(TEXTS[:1]))
    assert "307" in results[0].error and "not followed" in results[0].error
    assert target.requests == 0 and s.requests == 1


def test_refused_key_raises_naming_the_variable(server_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("FINECLASS_TEST_KEY", "wrong")
    s = server_factory(lambda b, t, n: (401, {}, {"error": {"message": "bad key"}}))
    ep = Endpoint(s.url, "m", key_env="FINECLASS_TEST_KEY", cache=False, backoff=0.01)
    with pytest.raises(FineclassError) as e:
        chat_many(ep, convs(TEXTS))
    assert "FINECLASS_TEST_KEY" in str(e.value) and "401" in str(e.value)


# ------------------------------------------------------------------------------------------ faults
def test_429_then_200_is_retried(server_factory, tmp_path):
    def respond(body, text, nth):
        if nth == 1:
            return 429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}
        return ok(body, text, nth)

    s = server_factory(respond)
    ep = Endpoint(s.url, "m", key_env=None, cache=False, backoff=0.01)
    results, stats = chat_many(ep, convs(TEXTS))
    assert [r.error for r in results] == [None] * 4
    assert [r.attempts for r in results] == [2] * 4
    assert [json.loads(r.content)["label"] for r in results] == [1, 0, 1, 0]
    assert s.requests == 8 and stats["requests"] == 8
    assert stats["prompt_tokens"] == 40 and stats["completion_tokens"] == 12


def test_long_retry_after_is_reported_not_waited(server_factory):
    s = server_factory(lambda b, t, n: (429, {"Retry-After": "3600"}, {"error": {"message": "quota"}}))
    ep = Endpoint(s.url, "m", key_env=None, cache=False, backoff=0.01, max_backoff=2)
    start = time.monotonic()
    results, _ = chat_many(ep, convs(TEXTS[:2]))
    assert time.monotonic() - start < 2
    assert all("429" in r.error and "3600" in r.error for r in results)


def test_5xx_then_200_is_retried_with_backoff(server_factory):
    s = server_factory(lambda b, t, n: (503, {}, b"busy") if n <= 2 else ok(b, t, n))
    ep = Endpoint(s.url, "m", key_env=None, cache=False, backoff=0.05)
    start = time.monotonic()
    results, _ = chat_many(ep, convs(TEXTS[:1]))
    assert results[0].error is None and results[0].attempts == 3
    assert time.monotonic() - start >= 0.05 + 0.1  # waited backoff, then twice that


def test_hanging_server_times_out_and_is_reported_per_item(server_factory):
    def respond(body, text, nth):
        if text == "dull":
            return ok(body, text, nth) + (1.5,)  # answers far past the client's timeout
        return ok(body, text, nth)

    s = server_factory(respond)
    ep = Endpoint(s.url, "m", key_env=None, cache=False, timeout=0.3, max_retries=1, backoff=0.01)
    start = time.monotonic()
    results, stats = chat_many(ep, convs(TEXTS))
    assert time.monotonic() - start < 1.5 * 2
    assert [r.error is None for r in results] == [True, True, True, False]
    assert "timed out" in results[3].error and results[3].attempts == 2
    assert stats["errors"] == 1 and s.seen["dull"] == 2


def test_malformed_json_is_retried_then_reported(server_factory):
    def respond(body, text, nth):
        if text == "a bad film":
            return 200, {"Content-Type": "application/json"}, b'{"choices": [ not json'
        if text == "dull" and nth == 1:
            return 200, {}, b"<html>gateway</html>"
        if text == "good acting, good plot":
            return 200, {}, {"no": "choices"}
        return ok(body, text, nth)

    s = server_factory(respond)
    ep = Endpoint(s.url, "m", key_env=None, cache=False, max_retries=2, backoff=0.01)
    results, stats = chat_many(ep, convs(TEXTS))
    assert results[0].error is None
    assert "malformed" in results[1].error and results[1].attempts == 3
    assert "malformed" in results[2].error and "choices" in results[2].error
    assert results[3].error is None and results[3].attempts == 2
    assert stats["errors"] == 2


def test_connection_refused_is_reported():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    ep = Endpoint(f"http://127.0.0.1:{port}", "m", key_env=None, cache=False, max_retries=1, backoff=0.01)
    results, _ = chat_many(ep, convs(TEXTS[:1]))
    assert "connection failed" in results[0].error


# ------------------------------------------------------------------------------------------ cache, concurrency
def test_cache_makes_a_rerun_send_no_requests(server_factory, tmp_path):
    s = server_factory(ok)
    ep = Endpoint(s.url, "m", key_env=None, cache=tmp_path)
    first, st1 = chat_many(ep, convs(TEXTS))
    assert s.requests == 4 and st1["cached"] == 0
    again, st2 = chat_many(Endpoint(s.url, "m", key_env=None, cache=tmp_path), convs(TEXTS))
    assert s.requests == 4, "a rerun must be served from the cache"
    assert st2["cached"] == 4 and st2["requests"] == 0
    assert [r.content for r in again] == [r.content for r in first]
    # another model or other parameters are other requests
    chat_many(Endpoint(s.url, "m2", key_env=None, cache=tmp_path), convs(TEXTS[:1]))
    chat_many(Endpoint(s.url, "m", key_env=None, cache=tmp_path, params={"temperature": 0.7}), convs(TEXTS[:1]))
    assert s.requests == 6
    # failures are not cached: they are tried again next time
    s.respond = lambda b, t, n: (500, {}, b"oops")
    res, _ = chat_many(Endpoint(s.url, "m", key_env=None, cache=tmp_path, max_retries=0), convs(["new text"]))
    assert res[0].error
    s.respond = ok
    res, _ = chat_many(Endpoint(s.url, "m", key_env=None, cache=tmp_path), convs(["new text"]))
    assert res[0].error is None and not res[0].cached


def test_concurrency_limit_is_respected(server_factory):
    s = server_factory(lambda b, t, n: ok(b, t, n) + (0.05,))
    ep = Endpoint(s.url, "m", key_env=None, cache=False, concurrency=3)
    results, _ = chat_many(ep, convs([f"text {i}" for i in range(12)]))
    assert all(r.error is None for r in results)
    assert 1 <= s.max_in_flight <= 3
    ep1 = Endpoint(s.url, "m", key_env=None, cache=False, concurrency=1)
    s.max_in_flight = 0
    chat_many(ep1, convs([f"text {i}" for i in range(4)]))
    assert s.max_in_flight == 1


# ------------------------------------------------------------------------------------------ protocol
def test_prompt_lists_labels_and_asks_for_json():
    msgs = build_messages(FLOURISH, "I am so happy today")
    assert msgs[-1] == {"role": "user", "content": "I am so happy today"}
    system = msgs[0]["content"]
    assert "happiness" in system and "belief in god" in system and "JSON" in system and "low" in system
    custom = build_messages(FLOURISH, "x", prompt="Code tweets. {labels}")
    assert custom[0]["content"].startswith("Code tweets.") and "JSON" in custom[0]["content"]


def test_parse_answer_is_strict():
    assert parse_answer(FLOURISH, '{"labels": [{"dimension": "happiness", "level": "high"}]}') == [
        {"dimension": "happiness", "level": "high", "confidence": None}
    ]
    fenced = '```json\n{"labels": [{"dimension": "Happiness ", "level": "LOW", "confidence": 0.7}]}\n```'
    assert parse_answer(FLOURISH, fenced) == [{"dimension": "happiness", "level": "low", "confidence": 0.7}]
    assert parse_answer(FLOURISH, '{"labels": []}') == []
    for bad in [
        "not json",
        '["happiness"]',
        '{"labels": [{"dimension": "joy", "level": "high"}]}',
        '{"labels": [{"dimension": "happiness", "level": "extreme"}]}',
        '{"labels": [{"dimension": "happiness", "level": "low"}, {"dimension": "happiness", "level": "high"}]}',
        'Sure! {"labels": []}',
        '{"answer": "happiness"}',
    ]:
        with pytest.raises(InvalidAnswer):
            parse_answer(FLOURISH, bad)
    assert parse_answer(SPEC, '{"label": 1}')[0]["label"] == "1"
    assert parse_answer(SPEC, '{"label": "positive", "confidence": 2}') == [{"label": "1", "confidence": None}]
    for bad in ['{"label": 7}', '{"label": [0, 1]}', '{"label": true}']:
        with pytest.raises(InvalidAnswer):
            parse_answer(SPEC, bad)
    multi = LabelSpec(kind="multi", classes=["a", "b", "c"], max_labels=2)
    assert [p["label"] for p in parse_answer(multi, '{"labels": ["a", "c", "a"]}')] == ["a", "c"]
    with pytest.raises(InvalidAnswer):
        parse_answer(multi, '{"labels": ["a", "b", "c"]}')


def test_format_answer_round_trips():
    for spec, props in [
        (SPEC, [{"label": "1", "confidence": 0.8}]),
        (FLOURISH, [{"dimension": "anxiety", "level": "medium", "confidence": 0.6}]),
        (LabelSpec(kind="multi", classes=["a", "b"]), [{"label": "b", "confidence": None}]),
    ]:
        assert parse_answer(spec, format_answer(spec, props)) == props


def test_endpoint_validates_settings():
    for kw, arg in [
        ({"timeout": 0}, "timeout"),
        ({"concurrency": 0}, "concurrency"),
        ({"max_retries": -1}, "max_retries"),
        ({"params": {"model": "x"}}, "params"),
    ]:
        with pytest.raises(FineclassError) as e:
            Endpoint("http://h", "m", key_env=None, **kw)
        assert e.value.argument == arg
    assert isinstance(ChatResult(), ChatResult)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.sampled_from(FLOURISH.classes), st.sampled_from(FLOURISH.levels)),
    st.sampled_from(["", "```json\n", "  "]),
)
def test_any_valid_answer_parses_back(cells, wrap):
    props = [{"dimension": d, "level": lv, "confidence": None} for d, lv in cells.items()]
    text = format_answer(FLOURISH, props)
    if wrap.startswith("```"):
        text = wrap + text + "\n```"
    else:
        text = wrap + text + wrap
    assert parse_answer(FLOURISH, text) == props


@settings(max_examples=60, deadline=None)
@given(
    st.text(min_size=1, max_size=12).filter(
        lambda s: s.strip().casefold() not in {c.casefold() for c in FLOURISH.classes}
    )
)
def test_no_label_outside_the_spec_is_ever_accepted(name):
    answer = json.dumps({"labels": [{"dimension": name, "level": "high"}]})
    with pytest.raises(InvalidAnswer):
        parse_answer(FLOURISH, answer)


def test_one_reader_for_both_forms_and_one_rule_for_letter_case():
    """The JSON form and the paper's form are read by the same parse_answer, with the same rules."""
    cap = LabelSpec(kind="single", classes=["1", "5"], names={"5": "Labour"}, value_type="int")
    assert (
        parse_answer(cap, "Answer = [5]") == parse_answer(cap, '{"label": 5}') == [{"label": "5", "confidence": None}]
    )
    assert parse_answer(cap, "Answer = [LABOUR]") == parse_answer(cap, '{"label": "LABOUR"}')
    multi = LabelSpec(kind="multi", classes=["a", "b", "c"], max_labels=2)
    assert parse_answer(multi, "Sure. Answer = [c, A]") == parse_answer(multi, '{"labels": ["c", "A"]}')
    for bad in ["Answer = [a, b, c]", '{"labels": ["a", "b", "c"]}', "Answer = [a, zzz]"]:
        with pytest.raises(InvalidAnswer) as e:
            parse_answer(multi, bad)
        assert e.value.status == "invalid_label"
    # the paper's dimension->level answer is a dictionary of the dimensions present
    assert parse_answer(FLOURISH, '{"Happiness": "HIGH", "anxiety": "absent"}') == parse_answer(
        FLOURISH, '{"labels": [{"dimension": "happiness", "level": "high"}]}'
    )
    # a code is matched as written first, so two codes that differ only by case stay apart
    cased = LabelSpec(kind="single", classes=["A", "a"])
    assert (
        parse_answer(cased, "Answer = [a]")[0]["label"] == "a"
        and parse_answer(cased, '{"label": "A"}')[0]["label"] == "A"
    )
    for text, status in [
        ("The answer is 5", "unparseable"),
        ('{"label": 5', "unparseable"),
        ("Answer = [7]", "invalid_label"),
        ("Answer = [1, 5]", "invalid_label"),
    ]:
        with pytest.raises(InvalidAnswer) as e:
            parse_answer(cap, text)
        assert e.value.status == status, text


def test_an_endpoint_answering_in_the_papers_form_is_a_proposer(server_factory):
    """A fineclass model exported and served by vLLM or llama.cpp answers `Answer = [...]`: propose reads it."""
    import fineclass

    paper = server_factory(
        lambda body, text, nth: (200, {}, completion("Answer = [1]" if "good" in text else "Answer = [negative]"))
    )
    ep = Endpoint(paper.url, "exported", key_env=None, cache=False)
    props = fineclass.propose({"id": [1, 2, 3], "text": ["good film", "bad film", "good plot"]}, [ep], spec=SPEC)
    assert props.column("label").to_pylist() == [1, 0, 1] and props.column("error").null_count == 3
    dims = server_factory(
        lambda body, text, nth: (200, {}, completion('{"happiness": "high"}' if "joy" in text else "{}"))
    )
    props = fineclass.propose(
        {"id": [1, 2], "text": ["joy", "rain"]}, [Endpoint(dims.url, "m", key_env=None, cache=False)], spec=FLOURISH
    )
    assert props.to_pylist() == [
        {"id": 1, "dimension": "happiness", "level": "high", "proposer": "m", "confidence": None, "error": None}
    ]
