"""Issue 21, item 9: ``fineclass serve`` holds under slow, many and malformed clients.

- a slow client is cut off by the read timeout (it no longer holds a thread forever);
- half-sent connections do not multiply threads: a fixed pool serves them, and connections over the cap get 503;
- a non-loopback bind needs ``allow_remote=True`` and a key;
- every malformed request gets a 4xx JSON error (two used to crash the handler with no reply);
- the log holds no fragment of a request body.

The soak test (many slow and normal clients at once) is tests/reliability/test_server_soak.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import warnings

import pytest

from fineclass import FineclassError
from fineclass.serve import start_server

from ._http import closed_within, post, read_response, send_raw

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def server(tiny_classifier):
    with start_server(tiny_classifier, read_timeout=2.0, idle_timeout=1.0, workers=4, max_connections=8) as h:
        yield h


def test_a_slow_client_is_cut_off_by_the_read_timeout(server):
    with socket.create_connection((server.host, server.port)) as sock:
        start = time.monotonic()
        request = b"GET /health HTTP/1.1\r\nHost: x\r\n"
        cut = None
        for k in range(len(request)):  # one byte every 0.5 s: each read gets a byte before the idle timeout
            try:
                sock.sendall(request[k : k + 1])
            except OSError:
                cut = time.monotonic() - start
                break
            if closed_within(sock, 0.5) is not None:
                cut = time.monotonic() - start
                break
    assert cut is not None and cut < 4.0, f"a slow client held its connection for {cut} s"


def test_half_sent_connections_neither_multiply_threads_nor_block_others(server):
    before = threading.active_count()
    socks = []
    try:
        for _ in range(30):  # more than the cap of 8: the rest are refused with 503 at once
            s = socket.create_connection((server.host, server.port))
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-")
            socks.append(s)
        time.sleep(0.5)
        threads = threading.active_count() - before
        assert threads <= 4, f"{threads} new threads for 30 half-sent connections"
        refused = [read_response(s, 2.0)[0] for s in socks[8:]]
        assert refused == [503] * 22
        assert server.connections["peak"] <= 8
    finally:
        for s in socks:
            s.close()
    time.sleep(2.5)  # the held connections time out
    status, body = send_raw(server.host, server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and body == {"status": "ok"}


def test_a_remote_bind_needs_consent_and_a_key(tiny_classifier):
    with pytest.raises(FineclassError, match="allow_remote") as e:
        start_server(tiny_classifier, host="0.0.0.0", key="k")
    assert e.value.argument == "host"
    with pytest.raises(FineclassError, match="key") as e:
        start_server(tiny_classifier, host="0.0.0.0", allow_remote=True)
    assert e.value.argument == "key"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        start_server(tiny_classifier, host="0.0.0.0", key="k", allow_remote=True).stop()


MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "bad HTTP version": b"GET /health HTTP/9.9\r\n\r\n",
    "unsupported method": b"PUT /v1/chat/completions HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    "header line too long": b"GET /health HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
    "negative length": b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    "body shorter than its length": b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 50\r\n\r\n{}",
    "not UTF-8": post(b"\xff\xfe{}"),
    "not JSON": post(b"{messages: ["),
    "a JSON array": post(b"[1, 2]"),
    "messages not a list": post(json.dumps({"messages": "hello"}).encode()),
    "content parts that are not text": post(
        json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}).encode()
    ),
    "a message that is not an object": post(json.dumps({"messages": [{"role": "user", "content": "ok"}, 7]}).encode()),
    "model as a list": post(json.dumps({"model": ["x"], "messages": [{"role": "user", "content": "a"}]}).encode()),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_every_malformed_request_gets_a_4xx_json_error(server, case):
    status, body = send_raw(server.host, server.port, MALFORMED[case])
    assert status is not None and 400 <= status < 500, (status, body)
    assert isinstance(body, dict) and body["error"]["code"] == status, body
    ok, health = send_raw(server.host, server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok == 200 and health == {"status": "ok"}


def test_the_log_never_holds_request_bodies(tiny_classifier, capfd):
    secret = "BODY-SECRET-7d1f"
    body = json.dumps({"messages": [{"role": "user", "content": f"a good film {secret}"}]}).encode()
    with start_server(tiny_classifier, quiet=False, read_timeout=2.0, idle_timeout=1.0) as h:
        assert send_raw(h.host, h.port, post(body))[0] == 200
        assert send_raw(h.host, h.port, post(body + f" {secret} HTTP/1.1".encode()))[0] in (200, 400)
        # a Content-Length shorter than the body: the rest arrives as the next "request line"
        short = (
            b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}" + f"{secret} x y z\r\n\r\n".encode()
        )
        with socket.create_connection((h.host, h.port)) as sock:
            sock.sendall(short)
            first = read_response(sock)
            second = read_response(sock)
        assert first[0] == 400 and second == (None, None)  # one request per connection: the rest is dropped
        assert send_raw(h.host, h.port, f"{secret}\r\n\r\n".encode())[0] == 400
    logged = capfd.readouterr().err
    assert "/v1/chat/completions" in logged  # requests are logged ...
    assert secret not in logged and "good film" not in logged  # ... without their bodies
