"""``fineclass serve``: an OpenAI-compatible HTTP endpoint for a fitted classifier.

It lets a fineclass model take part as a proposer from another process or machine, through the same
client as a closed model. Standard library only (``http.server``).

- ``GET /v1/models``: the served model.
- ``POST /v1/chat/completions``: the last user message is the document; the answer's content is the
  classifier's label(s) as JSON, in the form :func:`fineclass.protocol.parse_answer` reads, with ``usage``.
- ``GET /health``: ``{"status": "ok"}`` (no key needed).

The server binds 127.0.0.1 unless told otherwise. With a key, every ``/v1`` request must carry
``Authorization: Bearer <key>`` (401 otherwise). Request headers and bodies are never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa

from .classifier import load
from .errors import FineclassError, warn_user
from .protocol import format_answer, predictions_to_proposals

__all__ = ["serve", "start_server", "ServerHandle"]

MAX_BODY = 4 * 1024 * 1024


def _load(model_or_path: Any):
    if hasattr(model_or_path, "spec_") and hasattr(model_or_path, "predict"):
        return model_or_path
    if isinstance(model_or_path, (str, Path)):
        p = Path(model_or_path)
        if not p.exists():
            raise FineclassError(
                f"`model` {str(p)!r} does not exist. Pass a fitted Classifier or the folder a Classifier was saved to.",
                "model",
            )
        return load(p)
    raise FineclassError(
        f"`model` must be a fitted Classifier or the folder it was saved to; got {type(model_or_path).__name__}.",
        "model",
    )


def _last_user_text(messages) -> str | None:
    if not isinstance(messages, list):
        return None
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                c = "".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type", "text") == "text")
            return c if isinstance(c, str) else None
    return None


def _tokens(text: str) -> int:
    """Usage is counted in whitespace-separated words (the classifier has no chat tokenizer)."""
    return len(text.split())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class ServerHandle:
    """A server running in a background thread: ``.url`` (ends in ``/v1``), ``.requests``, ``.stop()``."""

    def __init__(self, httpd: _Server, thread: threading.Thread, name: str, state: dict):
        self._httpd = httpd
        self._thread = thread
        self.name = name
        self._state = state
        self.host, self.port = httpd.server_address[:2]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}/v1"

    @property
    def requests(self) -> int:
        """How many requests the server has received (all paths)."""
        return self._state["requests"]

    @property
    def completions(self) -> int:
        """How many chat-completion requests it has answered with 200."""
        return self._state["completions"]

    def stop(self) -> None:
        """Stop the server and wait for its thread (at most 5 s)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self) -> str:
        return f"ServerHandle(url={self.url!r}, model={self.name!r})"


def _make_handler(model, name: str, key: str | None, state: dict, lock: threading.Lock, quiet: bool):
    spec = model.spec_

    class Handler(BaseHTTPRequestHandler):
        server_version = "fineclass"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # method, path and status only; never headers or bodies
            if not quiet:
                sys.stderr.write(
                    f"{self.address_string()} {self.command} {self.path.split('?')[0]} "
                    f"{args[1] if len(args) > 1 else ''}\n"
                )

        def _reply(self, status: int, payload: dict, extra_headers: dict | None = None):
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra_headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, kind: str, extra_headers=None):
            self._reply(status, {"error": {"message": message, "type": kind, "code": status}}, extra_headers)

        def _count(self):
            with lock:
                state["requests"] += 1

        def _authorised(self) -> bool:
            if key is None:
                return True
            given = self.headers.get("Authorization", "")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if token and hmac.compare_digest(token.encode("utf-8"), key.encode("utf-8")):
                return True
            self._error(
                401,
                "a valid bearer key is required: send 'Authorization: Bearer <key>'.",
                "invalid_request_error",
                {"WWW-Authenticate": "Bearer"},
            )
            return False

        def do_GET(self):
            self._count()
            path = self.path.split("?")[0].rstrip("/")
            if path == "/health":
                return self._reply(200, {"status": "ok"})
            if path in ("/v1/models", "/models"):
                if not self._authorised():
                    return
                return self._reply(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": name, "object": "model", "created": state["created"], "owned_by": "fineclass"}],
                    },
                )
            if path.startswith(("/v1/models/", "/models/")):
                if not self._authorised():
                    return
                wanted = path.split("/models/", 1)[1]
                if wanted != name:
                    return self._error(
                        404,
                        f"model {wanted!r} is not served here; this server serves {name!r}.",
                        "invalid_request_error",
                    )
                return self._reply(
                    200, {"id": name, "object": "model", "created": state["created"], "owned_by": "fineclass"}
                )
            self._error(404, f"no such path: {path}", "invalid_request_error")

        def do_POST(self):
            self._count()
            path = self.path.split("?")[0].rstrip("/")
            if path not in ("/v1/chat/completions", "/chat/completions"):
                self._drain()
                return self._error(404, f"no such path: {path}", "invalid_request_error")
            if not self._authorised():
                self._drain()
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self.close_connection = True
                return self._error(413, f"the request body must be at most {MAX_BODY} bytes.", "invalid_request_error")
            raw = self.rfile.read(length)
            try:
                req = json.loads(raw.decode("utf-8"))
                assert isinstance(req, dict)
            except Exception:
                return self._error(400, "the request body is not a JSON object.", "invalid_request_error")
            if req.get("stream"):
                return self._error(400, "streaming is not supported; send stream=false.", "invalid_request_error")
            wanted = req.get("model")
            if wanted not in (None, name):
                return self._error(
                    404, f"model {wanted!r} is not served here; this server serves {name!r}.", "invalid_request_error"
                )
            text = _last_user_text(req.get("messages"))
            if text is None or not text.strip():
                return self._error(
                    400, "`messages` needs a user message with the document's text.", "invalid_request_error"
                )
            try:
                with lock:
                    preds = model.predict(
                        pa.table({"id": pa.array([0], pa.int64()), "text": [text]}), text="text", id="id"
                    )
                proposals = predictions_to_proposals(spec, preds)[0]
                content = format_answer(spec, proposals)
            except Exception as e:  # the model failed on this input: a 500, the server stays up
                return self._error(500, f"the classifier failed: {type(e).__name__}: {e}", "server_error")
            prompt_tokens = sum(
                _tokens(m.get("content", ""))
                for m in req.get("messages", [])
                if isinstance(m, dict) and isinstance(m.get("content"), str)
            )
            completion_tokens = _tokens(content)
            with lock:
                state["completions"] += 1
            self._reply(
                200,
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": name,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                },
            )

        def _drain(self):
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                n = 0
            if 0 < n <= MAX_BODY:
                self.rfile.read(n)
            else:
                self.close_connection = True

    return Handler


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve_key(key: str | None, key_env: str | None) -> str | None:
    if key is not None and key_env is not None:
        raise FineclassError("pass either `key` or `key_env`, not both.", "key")
    if key_env is not None:
        key = os.environ.get(key_env)
        if not key:
            raise FineclassError(
                f"the environment variable {key_env} that should hold the server's key is not "
                f"set. Set it, or leave `key_env` out to serve without a key.",
                "key_env",
            )
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise FineclassError("`key` must be a non-empty string.", "key")
    return key


def start_server(
    model_or_path: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    key: str | None = None,
    key_env: str | None = None,
    name: str | None = None,
    quiet: bool = True,
) -> ServerHandle:
    """Serve a classifier from a background thread.

    Binding anything but a loopback address without a key warns.

    Args:
        model_or_path: a fitted Classifier or a saved model's folder.
        host: the address to bind.
        port: the port (0: a free one).
        key: a bearer key clients must send.
        key_env: the name of an environment variable holding the key (instead of ``key``).
        name: the model name served (default: the folder's name).
        quiet: do not log requests.

    Returns:
        A :class:`ServerHandle` with ``.url`` (ending in ``/v1``) and ``.stop()``.

    Raises:
        FineclassError: naming ``model``, ``key``, ``key_env`` or ``port`` when they do not fit.

    Example:
        >>> with start_server("models/topics") as server:  # doctest: +SKIP
        ...     fineclass.propose(docs, [fineclass.Endpoint(server.url, "topics", key_env=None)], spec="models/topics")
    """
    model = _load(model_or_path)
    key = _resolve_key(key, key_env)
    if name is None:
        name = (
            Path(model_or_path).name
            if isinstance(model_or_path, (str, Path))
            else (getattr(model, "name_", None) or "fineclass")
        )
    if not _is_loopback(host) and key is None:
        warn_user(
            f"serving on {host} without a key: anyone who can reach this machine can use the model. "
            f"Pass a key (`--key-env`) or bind 127.0.0.1."
        )
    state = {"requests": 0, "completions": 0, "created": int(time.time())}
    lock = threading.Lock()
    handler = _make_handler(model, str(name), key, state, lock, quiet)
    try:
        httpd = (_Server6 if ":" in host else _Server)((host, port), handler)
    except OSError as e:
        raise FineclassError(
            f"could not listen on {host}:{port} ({e.strerror or e}). Pick another `port` or `host`.", "port"
        ) from None
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=f"fineclass-serve-{port}", daemon=True
    )
    thread.start()
    return ServerHandle(httpd, thread, str(name), state)


def serve(
    model_or_path: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    key: str | None = None,
    key_env: str | None = None,
    name: str | None = None,
    quiet: bool = False,
) -> None:
    """Serve a classifier until interrupted (Ctrl-C); see :func:`start_server`.

    Args:
        model_or_path: a fitted Classifier or a saved model's folder.
        host: the address to bind.
        port: the port.
        key: a bearer key clients must send.
        key_env: the name of an environment variable holding the key.
        name: the model name served.
        quiet: do not log requests.
    """
    handle = start_server(model_or_path, host, port, key=key, key_env=key_env, name=name, quiet=quiet)
    print(
        f"fineclass: serving {handle.name!r} at {handle.url} "
        f"({'bearer key required' if key or key_env else 'no key'}); Ctrl-C stops.",
        file=sys.stderr,
    )
    try:
        while handle._thread.is_alive():
            handle._thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
