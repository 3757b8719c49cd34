"""Fetch image URLs without letting a catalog reach into the network it runs in (SSRF).

Every hop is checked before anything connects: the scheme (http, https), then every address
the host resolves to must be public unless the policy's allowlist names the host or the
network.  The connection goes to an address that was checked (pinned), so a DNS answer
that changes between check and connect cannot redirect it; the Host header, SNI and the
certificate check still use the hostname.  Redirects are followed by hand and each target
is checked again.  One deadline covers resolving-to-reading, redirects and retries; the
byte cap holds while streaming.  Every failure is an ``ImageError`` "<url>: <why>".

Environment proxies are not used; name resolution (``getaddrinfo``) is bounded by the
system resolver's own timeouts, not by the deadline.
"""

from __future__ import annotations

import functools
import io
import ipaddress
import random
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.client import HTTPException, HTTPResponse, IncompleteRead
from typing import TYPE_CHECKING, Any, NamedTuple

from indexer.config import FetchPolicy
from indexer.media.addresses import classify_address, normal_host
from indexer.errors import ImageError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_CHUNK = 64 * 1024
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?"


DEFAULT_POLICY = FetchPolicy()


def fetch_url(url: str, *, policy: FetchPolicy = DEFAULT_POLICY) -> bytes:
    """The body of ``url`` (http/https, public addresses only), or ``ImageError`` "<url>: why"."""
    budget = _Budget(policy.deadline)
    current = url
    try:
        for hop in range(policy.max_redirects + 1):
            try:
                result = _get_with_retries(current, policy=policy, budget=budget)
            except _Failure as exc:
                if hop:
                    exc.reason += f" (after redirect to {current})"
                raise
            if isinstance(result, bytes):
                return result
            current = result.location
        raise _Failure(f"too many redirects (limit {policy.max_redirects})")
    except _Failure as exc:
        raise ImageError(f"{url}: {exc.reason}") from None
    except _DeadlineExceeded as exc:
        last = f" (last error: {exc.last})" if exc.last else ""
        raise ImageError(f"{url}: timed out after {policy.deadline} s{last}") from None


def fetch_many(urls: Iterable[str], *, policy: FetchPolicy = DEFAULT_POLICY) -> list[bytes | ImageError]:
    """Fetch ``urls`` with at most ``policy.max_concurrency`` at once; bytes or the error, in order."""
    urls = list(urls)
    if not urls:
        return []
    workers = min(policy.max_concurrency, len(urls))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitrina-fetch") as pool:
        return list(pool.map(functools.partial(_fetch_or_error, policy=policy), urls))


def _fetch_or_error(url: str, *, policy: FetchPolicy) -> bytes | ImageError:
    try:
        return fetch_url(url, policy=policy)
    except ImageError as exc:
        return exc


def retry_delay(policy: FetchPolicy, attempt: int, retry_after: float | None = None) -> float | None:
    """Seconds to wait before retry ``attempt + 1``; None when Retry-After asks too much."""
    backoff: float = min(policy.backoff_cap, policy.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)
    if retry_after is None:
        return backoff
    if retry_after > policy.max_retry_after:
        return None
    return max(backoff, retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def open_socket(family: int, sockaddr: tuple[Any, ...], timeout: float) -> socket.socket:
    """A TCP connection to exactly ``sockaddr`` (an address already checked)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class _Failure(Exception):
    def __init__(self, reason: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retryable, self.retry_after = reason, retryable, retry_after


class _DeadlineExceeded(Exception):
    def __init__(self, last: str | None = None):
        super().__init__(last)
        self.last = last


class _Redirect(NamedTuple):
    location: str


class _Budget:
    """The time left to one URL."""

    def __init__(self, seconds: float):
        self.ends = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.ends - time.monotonic()

    def timeout(self, limit: float) -> float:
        """``limit`` or the time left, whichever is shorter; raises once none is left."""
        left = self.remaining()
        if left <= 0:
            raise _DeadlineExceeded()
        return min(limit, left)


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str  # ASCII, lower case, no brackets
    port: int
    path: str  # request target: path and query, percent-encoded
    host_header: str


def _get_with_retries(url: str, *, policy: FetchPolicy, budget: _Budget) -> bytes | _Redirect:
    target = _parse(url)
    attempt = 0
    while True:
        try:
            return _attempt(target, policy=policy, budget=budget)
        except _Failure as exc:
            if not exc.retryable or attempt >= policy.retries:
                if attempt:
                    exc.reason += f" (after {attempt + 1} attempts)"
                raise
            delay = retry_delay(policy, attempt, exc.retry_after)
            if delay is None:
                exc.reason += f" (Retry-After {exc.retry_after:g} s is over the {policy.max_retry_after} s we wait)"
                raise
            if delay >= budget.remaining():
                raise _DeadlineExceeded(exc.reason) from None
            time.sleep(delay)
            attempt += 1


def _parse(url: str) -> _Target:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _Failure(f"invalid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _Failure(f"refused: scheme {scheme or '(none)'!r} is not allowed (http and https only)")
    if parts.username is not None or parts.password is not None:
        raise _Failure("refused: credentials in the URL are not accepted")
    if not parts.hostname:
        raise _Failure("invalid URL (no host)")
    try:
        host = normal_host(parts.hostname)
    except ValueError as exc:
        raise _Failure(f"invalid URL ({exc})") from None
    port = port or (443 if scheme == "https" else 80)
    path = urllib.parse.quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + urllib.parse.quote(parts.query, safe=_PATH_SAFE)
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == (443 if scheme == "https" else 80) else f"{shown}:{port}"
    return _Target(url=url, scheme=scheme, host=host, port=port, path=path, host_header=host_header)


def _checked_addresses(target: _Target, policy: FetchPolicy) -> list[tuple[int, tuple[Any, ...]]]:
    """Resolve the host; every address must be public or allowlisted. Nothing connects here."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        temporary = exc.errno == socket.EAI_AGAIN
        raise _Failure(f"cannot resolve host {target.host!r} ({exc.strerror})", retryable=temporary) from None
    except UnicodeError:
        raise _Failure(f"invalid URL (bad host name {target.host!r})") from None
    host_allowed = target.host in policy.allow_hosts
    checked: list[tuple[int, tuple[Any, ...]]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not (host_allowed or policy.permits(address)) and (reason := classify_address(address)):
            if target.host == str(address):
                raise _Failure(f"refused: {address} is {reason}")
            raise _Failure(f"refused: host {target.host!r} resolves to {address}, {reason}")
        if (family, sockaddr) not in checked:
            checked.append((family, sockaddr))
    if not checked:
        raise _Failure(f"cannot resolve host {target.host!r} (no IPv4 or IPv6 address)")
    return checked


def _connect(target: _Target, policy: FetchPolicy, budget: _Budget) -> socket.socket:
    """Connect to the first checked address that answers; TLS with SNI and hostname check."""
    failure: _Failure | None = None
    for family, sockaddr in _checked_addresses(target, policy):
        try:
            sock = open_socket(family, sockaddr, budget.timeout(policy.connect_timeout))
            break
        except TimeoutError:
            if budget.remaining() <= 0:
                raise _DeadlineExceeded("connect timed out") from None
            failure = _Failure(f"connect timed out after {policy.connect_timeout} s", retryable=True)
        except ConnectionRefusedError:
            failure = _Failure("connection refused", retryable=True)
        except OSError as exc:
            failure = _Failure(f"cannot connect ({exc.strerror or exc})", retryable=True)
    else:
        assert failure is not None
        raise failure
    if target.scheme == "http":
        return sock
    try:
        sock.settimeout(budget.timeout(policy.connect_timeout))
        return _tls_context(policy.ca_file).wrap_socket(sock, server_hostname=target.host)
    except ssl.SSLCertVerificationError as exc:
        raise _Failure(f"TLS certificate verification failed for {target.host} ({exc.verify_message})") from None
    except ssl.SSLError as exc:
        raise _Failure(f"TLS handshake failed ({exc.reason or exc})") from None
    except TimeoutError:
        if budget.remaining() <= 0:
            raise _DeadlineExceeded("TLS handshake timed out") from None
        raise _Failure(f"TLS handshake timed out after {policy.connect_timeout} s", retryable=True) from None
    except OSError as exc:
        raise _Failure(f"TLS handshake failed ({exc.strerror or exc})", retryable=True) from None
    finally:
        sock.close()  # after wrap_socket the TLS socket owns the descriptor; this closes nothing then


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class _DeadlineIO(io.RawIOBase):
    """The socket as http.client reads it: every receive bounded by the read timeout and the deadline."""

    def __init__(self, sock: socket.socket, policy: FetchPolicy, budget: _Budget):
        super().__init__()
        self._sock, self._policy, self._budget = sock, policy, budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._sock.settimeout(self._budget.timeout(self._policy.read_timeout))
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str) -> io.BufferedReader:  # what HTTPResponse calls on its "socket"
        return io.BufferedReader(self, buffer_size=_CHUNK)


def _attempt(target: _Target, *, policy: FetchPolicy, budget: _Budget) -> bytes | _Redirect:
    sock = _connect(target, policy, budget)
    try:
        request = (
            f"GET {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\nUser-Agent: {policy.user_agent}\r\n"
            "Accept: image/*, */*;q=0.5\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
        )
        sock.settimeout(budget.timeout(policy.read_timeout))
        sock.sendall(request.encode("ascii"))
        response = HTTPResponse(_DeadlineIO(sock, policy, budget), method="GET")  # type: ignore[arg-type]
        try:
            response.begin()
            return _outcome(target, response, policy)
        finally:
            response.close()
    except TimeoutError:
        if budget.remaining() <= 0:
            raise _DeadlineExceeded() from None
        raise _Failure(f"no data for {policy.read_timeout} s", retryable=True) from None
    except IncompleteRead as exc:
        raise _Failure(f"connection closed after {len(exc.partial)} bytes of a chunk", retryable=True) from None
    except ConnectionError as exc:  # also http.client.RemoteDisconnected
        raise _Failure(f"connection lost ({exc})", retryable=True) from None
    except HTTPException as exc:
        raise _Failure(f"bad HTTP response ({type(exc).__name__}: {exc})") from None
    except ssl.SSLError as exc:
        raise _Failure(f"TLS error ({exc.reason or exc})", retryable=True) from None
    except OSError as exc:
        raise _Failure(f"connection failed ({exc.strerror or exc})", retryable=True) from None
    finally:
        sock.close()


def _outcome(target: _Target, response: HTTPResponse, policy: FetchPolicy) -> bytes | _Redirect:
    status = response.status
    described = f"HTTP {status} {response.reason}".rstrip()
    if status in REDIRECT_STATUSES:
        location = (response.getheader("Location") or "").strip()
        if not location:
            raise _Failure(f"{described} without a Location header")
        return _Redirect(urllib.parse.urljoin(target.url, location))
    if status in RETRY_STATUSES:
        raise _Failure(described, retryable=True, retry_after=parse_retry_after(response.getheader("Retry-After")))
    if not 200 <= status < 300:
        raise _Failure(described)
    declared = response.length
    if declared is not None and declared > policy.max_bytes:
        raise _Failure(f"larger than the {policy.max_bytes}-byte limit (Content-Length {declared})")
    chunks, total = [], 0
    while chunk := response.read1(_CHUNK):
        total += len(chunk)
        if total > policy.max_bytes:
            raise _Failure(f"larger than the {policy.max_bytes}-byte limit")
        chunks.append(chunk)
    if declared is not None and total < declared:
        raise _Failure(f"connection closed after {total} of {declared} bytes", retryable=True)
    return b"".join(chunks)
