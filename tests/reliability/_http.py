"""Raw HTTP for the server tests: bytes exactly as a broken or hostile client would send them."""

from __future__ import annotations

import json
import socket
import time


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[int | None, dict | str | None]:
    """Read one HTTP response: (status, parsed JSON body or raw text); (None, None) when the server closed first."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return (None, None) if not data else (_status(data), data.decode("latin-1"))
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    text = body[:length].decode("utf-8", "replace")
    try:
        return _status(head), json.loads(text)
    except ValueError:
        return _status(head), text


def _status(head: bytes) -> int | None:
    parts = head.split(b"\r\n", 1)[0].split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def send_raw(host: str, port: int, data: bytes, timeout: float = 5.0) -> tuple[int | None, dict | str | None]:
    """Send ``data`` on a fresh connection and read one response."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_response(sock, timeout)


def post(body: bytes, path: str = "/v1/chat/completions", extra: str = "") -> bytes:
    """A POST request with ``body`` and its true Content-Length."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (reading and discarding), or None if it stayed open."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - start
    return None
