"""`fineclass serve`: a real HTTP server on loopback around a fitted tiny classifier."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pyarrow as pa
import pytest

from fineclass import FineclassError
from fineclass.cli import build_parser
from fineclass.client import Endpoint, chat_many
from fineclass.protocol import build_messages, parse_answer
from fineclass.serve import start_server


def call(url, path, body=None, key=None, method=None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(
        url.rsplit("/v1", 1)[0] + path,
        data=data,
        headers=headers,
        method=method or ("POST" if data is not None else "GET"),
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def served(tiny_classifier):
    h = start_server(tiny_classifier, name="tiny")
    yield h
    h.stop()


def test_binds_loopback_by_default(served):
    assert served.host == "127.0.0.1"
    assert served.url.startswith("http://127.0.0.1:") and served.url.endswith("/v1")
    assert served._httpd.socket.getsockname()[0] == "127.0.0.1"
    parser = build_parser()
    args = parser.parse_args(["serve", "some/model"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.key_env is None and callable(args.func)
    args = parser.parse_args(["serve", "m", "--host", "0.0.0.0", "--port", "9000", "--key-env", "MY_KEY"])
    assert (args.host, args.port, args.key_env) == ("0.0.0.0", 9000, "MY_KEY")


def test_models_and_chat_completion_match_the_classifier(served, tiny_classifier, reviews_small):
    status, models = call(served.url, "/v1/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["tiny"]
    texts = reviews_small["text"].to_list()[:6]
    expected = tiny_classifier.predict(pa.table({"id": list(range(6)), "text": texts}))
    spec = tiny_classifier.spec_
    for i, t in enumerate(texts):
        status, resp = call(served.url, "/v1/chat/completions", {"model": "tiny", "messages": build_messages(spec, t)})
        assert status == 200 and resp["object"] == "chat.completion"
        content = resp["choices"][0]["message"]["content"]
        (prop,) = parse_answer(spec, content)
        assert int(prop["label"]) == expected.column("label")[i].as_py()
        assert prop["confidence"] == pytest.approx(expected.column("confidence")[i].as_py(), abs=1e-3)
        u = resp["usage"]
        assert u["prompt_tokens"] > 0 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def test_bad_requests_get_errors_and_the_server_stays_up(served):
    before = served.requests
    assert call(served.url, "/v1/chat/completions", b"{not json")[0] == 400
    assert call(served.url, "/v1/chat/completions", {"model": "tiny", "messages": []})[0] == 400
    assert (
        call(
            served.url,
            "/v1/chat/completions",
            {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": True},
        )[0]
        == 400
    )
    status, err = call(
        served.url, "/v1/chat/completions", {"model": "other", "messages": [{"role": "user", "content": "x"}]}
    )
    assert status == 404 and "tiny" in err["error"]["message"]
    assert call(served.url, "/v1/nothing")[0] == 404
    assert call(served.url, "/health")[0] == 200
    assert served.requests == before + 6
    assert (
        call(
            served.url,
            "/v1/chat/completions",
            {"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "great"}]}]},
        )[0]
        == 200
    )


def test_bearer_key_is_enforced(tiny_classifier, monkeypatch):
    monkeypatch.setenv("FINECLASS_TEST_SERVE_KEY", "s3cret-key")
    with start_server(tiny_classifier, key_env="FINECLASS_TEST_SERVE_KEY", name="tiny") as h:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "a fine film"}]}
        assert call(h.url, "/v1/chat/completions", body)[0] == 401
        assert call(h.url, "/v1/chat/completions", body, key="wrong")[0] == 401
        assert call(h.url, "/v1/models")[0] == 401
        assert call(h.url, "/v1/chat/completions", body, key="s3cret-key")[0] == 200
        assert call(h.url, "/health")[0] == 200
        # the client reads the same variable
        res, _ = chat_many(
            Endpoint(h.url, "tiny", key_env="FINECLASS_TEST_SERVE_KEY", cache=False),
            [build_messages(tiny_classifier.spec_, "a fine film")],
        )
        assert res[0].error is None
        with pytest.raises(FineclassError) as e:
            chat_many(
                Endpoint(h.url, "tiny", key_env=None, cache=False),
                [build_messages(tiny_classifier.spec_, "a fine film")],
            )
        assert "401" in str(e.value)
    monkeypatch.delenv("FINECLASS_TEST_SERVE_KEY")
    with pytest.raises(FineclassError) as e:
        start_server(tiny_classifier, key_env="FINECLASS_TEST_SERVE_KEY")
    assert "FINECLASS_TEST_SERVE_KEY" in str(e.value)


def test_serves_a_saved_folder(tiny_classifier, tmp_path):
    """(A non-loopback bind: tests/reliability/test_server.py.)"""
    folder = tiny_classifier.save(tmp_path / "sentiment")
    with start_server(folder) as h:
        assert h.name == "sentiment"
        assert call(h.url, "/v1/models")[1]["data"][0]["id"] == "sentiment"
    with pytest.raises(FineclassError):
        start_server(tmp_path / "missing")


def test_fineclass_serve_command(tiny_classifier, tmp_path):
    """`fineclass serve MODEL --port P --key-env VAR` in its own process, stopped with SIGINT (Ctrl-C)."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    folder = tiny_classifier.save(tmp_path / "cli-model")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, FINECLASS_TEST_CLI_KEY="cli-key")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fineclass.cli",
            "serve",
            folder,
            "--port",
            str(port),
            "--key-env",
            "FINECLASS_TEST_CLI_KEY",
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if call(url, "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the server did not start within 60 s"
            time.sleep(0.2)
        body = {"model": "cli-model", "messages": [{"role": "user", "content": "a moving, funny film"}]}
        assert call(url, "/v1/chat/completions", body)[0] == 401
        status, resp = call(url, "/v1/chat/completions", body, key="cli-key")
        assert status == 200 and parse_answer(tiny_classifier.spec_, resp["choices"][0]["message"]["content"])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0 and f"http://127.0.0.1:{port}/v1" in err and "cli-key" not in err
