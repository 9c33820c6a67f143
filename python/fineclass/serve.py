"""``fineclass serve``: an OpenAI-compatible HTTP endpoint for a fitted classifier.

It lets a fineclass model take part as a proposer from another process or machine, through the same
client as a closed model. Standard library only (``http.server``).

- ``GET /v1/models``: the served model.
- ``POST /v1/chat/completions``: the last user message is the document; the answer's content is the
  classifier's label(s) as JSON, in the form :func:`fineclass.protocol.parse_answer` reads, with ``usage``.
- ``GET /health``: ``{"status": "ok"}`` (no key needed).

The server binds 127.0.0.1 unless told otherwise; any other address needs ``allow_remote=True`` and a key. With a
key, every ``/v1`` request must carry ``Authorization: Bearer <key>`` (401 otherwise). It holds under slow or
hostile clients: a fixed pool of worker threads serves the connections, at most ``max_connections`` are open at
once (more get a 503 at once), a request must arrive within ``read_timeout`` seconds and no read waits longer than
``idle_timeout``; every malformed request gets a 4xx JSON error. The log holds the client's address, the method,
the path and the status only: never headers or bodies.
"""

from __future__ import annotations

import contextlib
import hmac
import http
import io
import ipaddress
import json
import os
import queue
import re
import selectors
import socket
import socketserver
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pyarrow as pa

from .classifier import load
from .errors import FineclassError
from .protocol import format_answer, predictions_to_proposals

__all__ = ["serve", "start_server", "ServerHandle"]

MAX_BODY = 4 * 1024 * 1024
LIMITS = {"workers": 16, "max_connections": 64, "read_timeout": 10.0, "idle_timeout": 5.0}
_METHODS = ("GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS")


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


class _DeadlineReader(io.RawIOBase):
    """A socket reader: what the collector read first, then the socket until the deadline or an idle timeout."""

    def __init__(self, sock: socket.socket, handler: Any, idle_timeout: float, prefix: bytes = b""):
        self._sock = sock
        self._handler = handler
        self._idle = idle_timeout
        self._prefix = memoryview(prefix)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if len(self._prefix):
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        remaining = self._handler.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(min(self._idle, remaining))
        return self._sock.recv_into(buffer)


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*(?=\r\n)", re.IGNORECASE)
MAX_HEADER = 65536


def _request_complete(buf: bytes) -> bool:
    """Whether ``buf`` holds a whole request, or enough that the handler can only refuse it (too long, too big)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return len(buf) > MAX_HEADER
    m = _CONTENT_LENGTH.search(buf, 0, end + 2)
    if m is None:
        return True
    n = int(m.group(1))
    return n > MAX_BODY or len(buf) >= end + 4 + n


def _json_response(status: int, phrase: str, message: str) -> bytes:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": status}}).encode()
    head = f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


_BUSY = _json_response(503, "Service Unavailable", "too many open connections; retry in a second.")
_TIMED_OUT = _json_response(408, "Request Timeout", "the request did not arrive within the server's read timeout.")


class _Collector(threading.Thread):
    """One thread that receives every request in full before a worker sees it.

    A slow client holds a socket here, never a worker; a request not complete within ``read_timeout`` seconds has
    its connection closed.
    """

    def __init__(self, server: "_Server", read_timeout: float):
        super().__init__(name="fineclass-serve-collector", daemon=True)
        self._server = server
        self._timeout = read_timeout
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._incoming: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict = {}  # socket -> [bytearray, deadline, address]
        self._stopped = threading.Event()
        self.cut_off = 0

    def add(self, sock: socket.socket, address: Any) -> None:
        self._incoming.put((sock, address))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def run(self) -> None:
        while not self._stopped.is_set():
            now = time.monotonic()
            wait = min([st[1] for st in self._pending.values()], default=now + 0.5) - now
            for key, _ in self._selector.select(max(0.0, min(wait, 0.5))):
                if key.fileobj is self._wake_r:
                    self._take_new()
                else:
                    self._receive(key.fileobj)
            now = time.monotonic()
            for sock in [s for s, st in self._pending.items() if st[1] <= now]:
                self.cut_off += 1
                with contextlib.suppress(OSError):  # a best-effort 408; the socket is non-blocking
                    sock.send(_TIMED_OUT)
                self._drop(sock)
        for sock in list(self._pending):
            self._drop(sock)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _take_new(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        while not self._incoming.empty():
            sock, address = self._incoming.get()
            sock.setblocking(False)
            self._pending[sock] = [bytearray(), time.monotonic() + self._timeout, address]
            self._selector.register(sock, selectors.EVENT_READ)

    def _receive(self, sock: socket.socket) -> None:
        state = self._pending[sock]
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        state[0] += data
        if _request_complete(state[0]):
            self._selector.unregister(sock)
            del self._pending[sock]
            sock.setblocking(True)
            self._server.dispatch(sock, state[2], bytes(state[0]))

    def _drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        self._pending.pop(sock, None)
        self._server.release(sock)


class _Server(socketserver.TCPServer):
    """An HTTP server: a collector receives each request, a fixed pool of workers answers it, connections capped."""

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, *, workers: int, max_connections: int, read_timeout: float):
        self.max_connections = max_connections
        self.open_connections = 0
        self.peak_connections = 0
        self.refused_connections = 0
        self._count_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fineclass-serve-worker")
        super().__init__(address, handler)
        self.collector = _Collector(self, read_timeout)
        self.collector.start()

    def process_request(self, request, client_address):
        with self._count_lock:
            full = self.open_connections >= self.max_connections
            if full:
                self.refused_connections += 1
            else:
                self.open_connections += 1
                self.peak_connections = max(self.peak_connections, self.open_connections)
        if full:
            self._refuse(request)
        else:
            self.collector.add(request, client_address)

    def dispatch(self, request, client_address, received: bytes) -> None:
        """Hand a connection whose request has fully arrived to a worker."""
        self._pool.submit(self._work, request, client_address, received)

    def _work(self, request, client_address, received: bytes):
        try:
            self.RequestHandlerClass(request, client_address, self, received)
        except Exception:
            pass  # a client that vanished mid-reply; nothing to log (it could echo request data)
        finally:
            self.release(request)

    def release(self, request) -> None:
        """Close a connection and count it closed."""
        self.shutdown_request(request)
        with self._count_lock:
            self.open_connections -= 1

    def _refuse(self, request):
        try:
            request.settimeout(1.0)
            request.sendall(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def server_close(self):
        self.collector.stop()
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.collector.join(timeout=2)


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
    def connections(self) -> dict:
        """Connections open now, the most open at once, refused (503, over the cap) and cut off (read timeout)."""
        h = self._httpd
        return {
            "open": h.open_connections,
            "peak": h.peak_connections,
            "refused": h.refused_connections,
            "cut_off": h.collector.cut_off,
        }

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


def _safe_path(path: Any) -> str:
    """The path of a request for the log: printable, without the query, at most 100 characters."""
    if not isinstance(path, str) or not path.startswith("/"):
        return "-"
    path = path.split("?")[0][:100]
    return path if path.isprintable() and " " not in path else "-"


def _make_handler(model, name: str, key: str | None, state: dict, lock: threading.Lock, quiet: bool, limits: dict):
    spec = model.spec_

    class Handler(BaseHTTPRequestHandler):
        server_version = "fineclass"
        sys_version = ""
        protocol_version = "HTTP/1.1"
        deadline = 0.0

        def __init__(self, request, client_address, server, received: bytes = b""):
            self._received = received
            super().__init__(request, client_address, server)

        def setup(self):
            super().setup()
            self.rfile.close()
            self.rfile = io.BufferedReader(
                _DeadlineReader(self.connection, self, limits["idle_timeout"], self._received)
            )

        def handle(self):  # one request per connection: the next one goes through the collector on a new one
            self.deadline = time.monotonic() + limits["read_timeout"]
            self.command, self.path = None, None
            self.handle_one_request()

        def log_message(self, format, *args):  # method, path and status only; never headers or bodies
            if quiet:
                return
            status = args[1] if len(args) > 1 and str(args[1]).isdigit() else "-"
            method = self.command if self.command in _METHODS else "-"
            sys.stderr.write(f"{self.address_string()} {method} {_safe_path(self.path)} {status}\n")

        def log_error(self, format, *args):  # the standard message can quote the request line (a body fragment)
            if not quiet:
                sys.stderr.write(f"{self.address_string()} malformed or timed-out request\n")

        def send_error(self, code, message=None, explain=None):
            """Every error the HTTP layer finds (bad request line, headers, method) as a JSON reply."""
            self.close_connection = True
            code = {501: 405, 505: 400}.get(code, code)  # the client's fault: a 4xx, as every malformed request
            if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):  # an unreadable request line: answer in 1.1
                self.request_version = "HTTP/1.1"
            try:
                phrase = http.HTTPStatus(code).phrase
            except ValueError:
                phrase = "error"
            try:
                self._error(code, f"malformed request: {phrase}.", "invalid_request_error")
            except OSError:
                pass

        def _reply(self, status: int, payload: dict, extra_headers: dict | None = None):
            self.connection.settimeout(limits["idle_timeout"])
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra_headers or {}).items():
                self.send_header(k, v)
            self.close_connection = True
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
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
            try:
                raw = self.rfile.read(length)
            except TimeoutError:
                self.close_connection = True
                return self._error(408, "the request body did not arrive in time.", "invalid_request_error")
            if len(raw) < length:
                self.close_connection = True
                return self._error(400, "the request body is shorter than its Content-Length.", "invalid_request_error")
            try:
                req = json.loads(raw.decode("utf-8"))
                assert isinstance(req, dict)
            except Exception:
                return self._error(400, "the request body is not a JSON object.", "invalid_request_error")
            try:
                return self._complete(req)
            except (TypeError, ValueError, AttributeError, KeyError):  # a body of the wrong shape
                return self._error(400, "the request body is not a chat-completion request.", "invalid_request_error")

        def _complete(self, req: dict):
            messages = req.get("messages")
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                return self._error(400, "`messages` must be a list of message objects.", "invalid_request_error")
            if req.get("stream"):
                return self._error(400, "streaming is not supported; send stream=false.", "invalid_request_error")
            wanted = req.get("model")
            if wanted is not None and wanted != name:
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
                _tokens(m["content"])
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


def _check_limits(workers: Any, max_connections: Any, read_timeout: Any, idle_timeout: Any) -> dict:
    out = {}
    for arg, value, kind in (
        ("workers", workers, int),
        ("max_connections", max_connections, int),
        ("read_timeout", read_timeout, float),
        ("idle_timeout", idle_timeout, float),
    ):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        if not ok or (kind is int and value != int(value)):
            raise FineclassError(f"`{arg}` must be a positive {kind.__name__}; got {value!r}.", arg)
        out[arg] = kind(value)
    if out["max_connections"] < out["workers"]:
        raise FineclassError(
            f"`max_connections` ({out['max_connections']}) must be at least `workers` ({out['workers']}).",
            "max_connections",
        )
    return out


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
    allow_remote: bool = False,
    workers: int = LIMITS["workers"],
    max_connections: int = LIMITS["max_connections"],
    read_timeout: float = LIMITS["read_timeout"],
    idle_timeout: float = LIMITS["idle_timeout"],
) -> ServerHandle:
    """Serve a classifier from a background thread.

    Binding anything but a loopback address needs both ``allow_remote=True`` and a key.

    Args:
        model_or_path: a fitted Classifier or a saved model's folder.
        host: the address to bind.
        port: the port (0: a free one).
        key: a bearer key clients must send.
        key_env: the name of an environment variable holding the key (instead of ``key``).
        name: the model name served (default: the folder's name).
        quiet: do not log requests.
        allow_remote: let a non-loopback ``host`` be bound (with a key only).
        workers: the threads that serve connections (a fixed pool).
        max_connections: the most connections open at once; more get a 503 at once.
        read_timeout: seconds a request (line, headers and body) may take to arrive; a slower client is cut off.
        idle_timeout: seconds one read may wait for the client's next byte (also between keep-alive requests).

    Returns:
        A :class:`ServerHandle` with ``.url`` (ending in ``/v1``) and ``.stop()``.

    Raises:
        FineclassError: naming ``model``, ``key``, ``key_env``, ``host``, ``port`` or a limit when they do not fit.

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
    limits = _check_limits(workers, max_connections, read_timeout, idle_timeout)
    if not _is_loopback(host):
        if not allow_remote:
            raise FineclassError(
                f"`host` {host!r} is not a loopback address: other machines could reach the model. Pass "
                f"allow_remote=True (--allow-remote) with a key to mean it, or bind 127.0.0.1.",
                "host",
            )
        if key is None:
            raise FineclassError(
                f"serving on {host} needs a bearer key, so that only your clients use the model: pass `key` or "
                f"`key_env` (--key-env VAR).",
                "key",
            )
    state = {"requests": 0, "completions": 0, "created": int(time.time())}
    lock = threading.Lock()
    handler = _make_handler(model, str(name), key, state, lock, quiet, limits)
    try:
        httpd = (_Server6 if ":" in host else _Server)(
            (host, port),
            handler,
            workers=limits["workers"],
            max_connections=limits["max_connections"],
            read_timeout=limits["read_timeout"],
        )
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
    allow_remote: bool = False,
    **limits: Any,
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
        allow_remote: let a non-loopback ``host`` be bound (with a key only).
        **limits: ``workers``, ``max_connections``, ``read_timeout``, ``idle_timeout`` (see :func:`start_server`).
    """
    handle = start_server(
        model_or_path,
        host,
        port,
        key=key,
        key_env=key_env,
        name=name,
        quiet=quiet,
        allow_remote=allow_remote,
        **{k: v for k, v in limits.items() if v is not None},
    )
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
