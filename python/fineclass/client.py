"""A small client for OpenAI-compatible chat endpoints (HTTP only; the answer protocol is in protocol.py).

:class:`Endpoint` and :func:`chat_many` send many chat requests to one endpoint (OpenAI, or a local server such
as Ollama, vLLM, llama.cpp or ``fineclass serve``) with a timeout, retries with exponential backoff on 429 /
5xx / timeouts / malformed responses, a concurrency limit and an on-disk response cache. A failed item is
reported in its result (``error``), never raised, so one bad answer does not end a run.

The API key is read from an environment variable each time a request is sent. It is never stored on the
endpoint, never written to the cache, to logs or to manifests, and never part of a cache key.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ._fs import atomic_file
from .errors import FineclassError

__all__ = ["Endpoint", "ChatResult", "chat_many", "default_cache_dir"]

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def default_cache_dir() -> Path:
    """Where responses are cached when ``cache=True``.

    Returns:
        ``$FINECLASS_CACHE/chat``, else ``$XDG_CACHE_HOME/fineclass/chat`` or ``~/.cache/fineclass/chat``.
    """
    base = os.environ.get("FINECLASS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "fineclass"
    )
    return Path(base) / "chat"


def _chat_url(url: str) -> str:
    """Validate a base URL and return the full chat-completions URL."""
    if not isinstance(url, str) or not url.strip():
        raise FineclassError(
            "`url` must be the endpoint's address, e.g. 'https://api.openai.com/v1' or 'http://127.0.0.1:8000/v1'.",
            "url",
        )
    url = url.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FineclassError(
            f"`url` {url!r} has no http:// or https:// scheme and host. Write it in full, e.g. "
            f"'http://{url.split('://')[-1].lstrip('/')}'.",
            "url",
        )
    if parts.username or parts.password:
        raise FineclassError(
            "`url` must not contain a user name or password; put the key in an environment "
            "variable and name it with `key_env=`.",
            "url",
        )
    path = parts.path.rstrip("/")
    if path.endswith("/chat/completions"):
        pass
    elif path.endswith("/v1"):
        path += "/chat/completions"
    else:
        path += "/v1/chat/completions"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@dataclass
class Endpoint:
    """An OpenAI-compatible chat endpoint used as a proposer.

    Parameters
    ----------
    url: base address (``https://api.openai.com/v1``, ``http://127.0.0.1:8000``) or the full
        ``.../chat/completions`` address.
    model: the model name the endpoint expects.
    key_env: name of the environment variable that holds the API key, read at each request;
        ``None`` for servers without a key. The key itself is never stored.
    name: the proposer's name in tables (default: ``model``).
    timeout: seconds to wait on the connection and on each read before a try counts as failed.
    max_retries: further tries after a failed one (429, 5xx, timeout, connection error, malformed body).
    backoff: first wait in seconds; doubled after each failed try, capped at ``max_backoff``.
    max_backoff: the longest wait between tries; a ``Retry-After`` up to this long is honoured, a longer
        one ends the item's tries and is reported.
    concurrency: the most requests in flight at once.
    params: request parameters sent with every request (default ``{"temperature": 0}``); part of the cache key.
    cache: a folder for cached responses, ``True`` for :func:`default_cache_dir`, ``False``/``None`` for none.
    """

    url: str
    model: str
    key_env: str | None = "OPENAI_API_KEY"
    name: str | None = None
    timeout: float = 60.0
    max_retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    concurrency: int = 4
    params: dict = field(default_factory=lambda: {"temperature": 0})
    cache: Any = True

    def __post_init__(self):
        self.chat_url = _chat_url(self.url)
        if not isinstance(self.model, str) or not self.model:
            raise FineclassError("`model` must name the model the endpoint serves (see its /v1/models).", "model")
        if self.key_env is not None and (not isinstance(self.key_env, str) or not self.key_env):
            raise FineclassError("`key_env` must be the name of an environment variable, or None.", "key_env")
        if self.key_env and self.key_env.startswith(("sk-", "Bearer ")):
            raise FineclassError(
                "`key_env` takes the name of an environment variable, not the key itself. Put "
                "the key in a variable (e.g. OPENAI_API_KEY) and pass its name.",
                "key_env",
            )
        for arg in ("timeout", "backoff", "max_backoff"):
            v = getattr(self, arg)
            if not isinstance(v, (int, float)) or v < 0 or (arg == "timeout" and v == 0):
                raise FineclassError(f"`{arg}` must be a positive number of seconds; got {v!r}.", arg)
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise FineclassError(f"`max_retries` must be a whole number >= 0; got {self.max_retries!r}.", "max_retries")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise FineclassError(f"`concurrency` must be a whole number >= 1; got {self.concurrency!r}.", "concurrency")
        reserved = {"model", "messages", "stream"} & set(self.params or {})
        if reserved:
            raise FineclassError(
                f"`params` may not set {', '.join(sorted(reserved))}; they are set by fineclass.", "params"
            )
        self.params = dict(self.params or {})

    @property
    def label(self) -> str:
        """The proposer's name."""
        return self.name or self.model

    def cache_dir(self) -> Path | None:
        """The folder of this endpoint's response cache.

        Returns:
            The folder, or None when caching is off.
        """
        if self.cache is True:
            return default_cache_dir()
        if self.cache in (False, None):
            return None
        return Path(self.cache)

    def _key(self) -> str | None:
        if self.key_env is None:
            return None
        key = os.environ.get(self.key_env)
        if not key:
            raise FineclassError(
                f"the environment variable {self.key_env} that should hold the API key for {self.url} is not "
                f"set. Set it (e.g. in R: Sys.setenv({self.key_env} = '...'), in a shell: export "
                f"{self.key_env}=...), or pass `key_env=None` for a server without a key.",
                "key_env",
            )
        return key

    def cache_key(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The hash that names a request's cached response: URL, model, messages and parameters (never the key).

        Args:
            messages: the request's chat messages.

        Returns:
            A hex SHA-256.
        """
        blob = json.dumps(
            {"url": self.chat_url, "model": self.model, "messages": list(messages), "params": self.params},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def chat(self, messages: Sequence[Mapping[str, Any]]) -> "ChatResult":
        """One request (through the cache); failures are reported in the result's ``error``.

        Args:
            messages: the chat messages.

        Returns:
            A :class:`ChatResult`.
        """
        return chat_many(self, [messages])[0][0]


@dataclass
class ChatResult:
    """The outcome of one chat request."""

    content: str | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 0
    cached: bool = False
    seconds: float = 0.0


class _Abort(Exception):
    """An error that concerns every request (bad key, unknown model): stop the run and raise it."""

    def __init__(self, message: str, argument: str):
        super().__init__(message)
        self.argument = argument


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _read_cache(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "content" in data else None


def _write_cache(path: Path, record: dict) -> None:
    with atomic_file(path, durable=False) as tmp:  # a cache: a lost entry after a crash is asked again
        tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")


def _extract(body: bytes) -> tuple[str, dict]:
    """Content and usage from an OpenAI-shaped response body; ValueError when it is not one."""
    data = json.loads(body.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("the response is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("the response has no `choices`")
    message = choices[0].get("message") or {}
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise ValueError("the response's message has no text content")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return content, usage


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: they would carry the key to another address. A 3xx is reported."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _send(endpoint: Endpoint, messages, key: str | None, stop: threading.Event) -> ChatResult:
    body = json.dumps({"model": endpoint.model, "messages": list(messages), **endpoint.params}).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "fineclass-client"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    result = ChatResult()
    start = time.monotonic()
    last_error = "no try was made"
    for attempt in range(endpoint.max_retries + 1):
        if stop.is_set():
            last_error = "not sent: the run stopped on an earlier error"
            break
        result.attempts = attempt + 1
        wait = None
        try:
            req = urllib.request.Request(endpoint.chat_url, data=body, headers=headers, method="POST")
            with _OPENER.open(req, timeout=endpoint.timeout) as resp:
                raw = resp.read()
            content, usage = _extract(raw)
            result.content = content
            result.error = None
            result.prompt_tokens = _int_or_none(usage.get("prompt_tokens"))
            result.completion_tokens = _int_or_none(usage.get("completion_tokens"))
            result.seconds = time.monotonic() - start
            return result
        except urllib.error.HTTPError as e:
            detail = _error_detail(e)
            if e.code in (401, 403):
                raise _Abort(
                    f"{endpoint.url} refused the key (HTTP {e.code}{detail}). Check the key in the "
                    f"environment variable {endpoint.key_env}."
                    if endpoint.key_env
                    else f"{endpoint.url} asks for a key (HTTP {e.code}{detail}). Put it in an environment "
                    f"variable and pass its name as `key_env=`.",
                    "key_env",
                ) from None
            if e.code == 404:
                raise _Abort(
                    f"{endpoint.chat_url} answered 404 Not Found{detail}. Check `url` and `model` "
                    f"({endpoint.model!r}).",
                    "url",
                ) from None
            last_error = f"HTTP {e.code}{detail}"
            if 300 <= e.code < 400:
                last_error += f" (a redirect to {e.headers.get('Location')!r}, not followed: use that address as `url`)"
            if e.code not in RETRY_STATUS:
                break
            wait = _retry_after(e.headers)
            if wait is not None and wait > endpoint.max_backoff:
                last_error += f"; the server asked to wait {wait:.0f} s, more than max_backoff"
                break
        except (socket.timeout, TimeoutError):
            last_error = f"timed out after {endpoint.timeout:g} s"
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                last_error = f"timed out after {endpoint.timeout:g} s"
            else:
                last_error = f"connection failed: {reason}"
        except (ValueError, UnicodeDecodeError, http.client.IncompleteRead) as e:
            last_error = f"malformed response: {e}"
        except http.client.HTTPException as e:
            last_error = f"malformed response: {type(e).__name__} {e}"
        except (ConnectionError, OSError) as e:  # reset, broken pipe, incomplete read
            last_error = f"connection failed: {e}"
        if attempt < endpoint.max_retries:
            if wait is None:
                wait = min(endpoint.max_backoff, endpoint.backoff * (2**attempt))
                wait += random.uniform(0, 0.1 * wait)
            stop.wait(wait)
    result.error = last_error
    result.seconds = time.monotonic() - start
    return result


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        text = e.read(2000).decode("utf-8", "replace")
        msg = json.loads(text).get("error", {})
        msg = msg.get("message") if isinstance(msg, dict) else msg
        return f": {str(msg)[:200]}" if msg else ""
    except Exception:
        return ""


def _int_or_none(v) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def chat_many(
    endpoint: Endpoint, conversations: Sequence[Sequence[Mapping[str, Any]]], *, progress: bool = False
) -> tuple[list[ChatResult], dict]:
    """Send many conversations to one endpoint.

    Cached responses are used without a request. Each failed item carries its ``error``; only an error that
    concerns every request (key refused, 404) raises.

    Args:
        endpoint: the endpoint.
        conversations: one list of chat messages per item.
        progress: show a progress bar.

    Returns:
        ``(results, stats)``: one :class:`ChatResult` per conversation, in input order; and the run's requests
        (HTTP tries sent), cached, errors, prompt_tokens, completion_tokens, seconds.

    Raises:
        FineclassError: naming ``key_env`` or ``url`` when the endpoint refuses the key or does not exist.

    Example:
        >>> results, stats = chat_many(Endpoint("http://127.0.0.1:8000/v1", "m", key_env=None),
        ...                            [[{"role": "user", "content": "hi"}]])  # doctest: +SKIP
    """
    cache_dir = endpoint.cache_dir()
    results: list[ChatResult | None] = [None] * len(conversations)
    todo = []
    for i, msgs in enumerate(conversations):
        if cache_dir is not None:
            h = endpoint.cache_key(msgs)
            rec = _read_cache(cache_dir / h[:2] / f"{h}.json")
            if rec is not None:
                results[i] = ChatResult(content=rec["content"], cached=True)
                continue
        todo.append(i)
    start = time.monotonic()
    if todo:
        key = endpoint._key()  # read once per run, at call time; a missing variable raises here
        stop = threading.Event()
        bar = _progress(len(todo), endpoint.label) if progress else None

        def work(i):
            r = _send(endpoint, conversations[i], key, stop)
            if r.error is None and cache_dir is not None:
                h = endpoint.cache_key(conversations[i])
                _write_cache(
                    cache_dir / h[:2] / f"{h}.json",
                    {
                        "content": r.content,
                        "model": endpoint.model,
                        "url": endpoint.chat_url,
                        "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens},
                        "created": int(time.time()),
                    },
                )
            if bar is not None:
                bar.update(1)
            return r

        with ThreadPoolExecutor(max_workers=min(endpoint.concurrency, len(todo))) as pool:
            futures = {i: pool.submit(work, i) for i in todo}
            abort = None
            for i, fut in futures.items():
                try:
                    results[i] = fut.result()
                except _Abort as e:
                    stop.set()
                    abort = abort or e
                    results[i] = ChatResult(error=str(e))
        if bar is not None:
            bar.close()
        if abort:
            raise FineclassError(str(abort), abort.argument)
    stats = {
        "proposer": endpoint.label,
        "items": len(conversations),
        "requests": sum(r.attempts for r in results if r is not None),
        "cached": sum(1 for r in results if r is not None and r.cached),
        "errors": sum(1 for r in results if r is not None and r.error),
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in results if r is not None),
        "completion_tokens": sum(r.completion_tokens or 0 for r in results if r is not None),
        "seconds": round(time.monotonic() - start, 3),
    }
    return results, stats  # type: ignore[return-value]


def _progress(total: int, name: str):
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"propose: {name}", unit="req", leave=False)
    except ImportError:  # pragma: no cover
        return None
