"""The SSRF-safe URL fetcher, against a small threaded HTTP server on 127.0.0.1 (never the network)."""

from __future__ import annotations

import io
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote

import pytest
from PIL import Image

from indexer.media import fetch
from indexer.errors import ImageError
from indexer.media.fetch import FetchPolicy, classify_address, fetch_many, fetch_url, parse_retry_after, retry_delay

buffer = io.BytesIO()
Image.new("RGB", (4, 4), (200, 10, 10)).save(buffer, format="PNG")
PNG = buffer.getvalue()
LOCAL = FetchPolicy(allow_networks=("127.0.0.1/32",), backoff_base=0.001, deadline=5.0)


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.paths: list[str] = []
        self.hosts: list[str] = []
        self.attempts: Counter[str] = Counter()
        self.in_flight = self.max_in_flight = 0
        self.sni: list[str | None] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection; bodies without length end at close

    def log_message(self, *args) -> None:
        pass

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, length: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state: State = self.server.state  # type: ignore[attr-defined]
        route, _, query = self.path.partition("?")
        params = dict(parse_qsl(query))
        with state.lock:
            state.paths.append(route)
            state.hosts.append(self.headers.get("Host", ""))
        try:
            self.route(state, route, params)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client gave up on purpose (cap, deadline)

    def route(self, state: State, route: str, params: dict[str, str]) -> None:
        if route == "/image.png":
            self.send(200, PNG, {"Content-Type": "image/png"})
        elif route == "/host":
            self.send(200, self.headers.get("Host", "").encode())
        elif route.startswith("/redirect/"):
            left = int(route.rsplit("/", 1)[1])
            if left:
                self.send(302, headers={"Location": f"/redirect/{left - 1}"})
            else:
                self.send(200, PNG)
        elif route == "/to":
            self.send(int(params.get("status", 302)), headers={"Location": params["url"]})
        elif route == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(b"x" * 100)
        elif route == "/big-stream":
            self.send(200, b"x" * 50_000, length=False)
        elif route == "/drip":
            self.wfile.write(b"HTTP/1.0 200 OK\r\n")
            if params.get("phase") != "headers":
                self.wfile.write(b"Content-Length: 100\r\n\r\n")
            for _ in range(100):  # bounded: at most 5 s, ends at the first failed write once the client left
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif route == "/stall":
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n")
            self.wfile.flush()
            time.sleep(0.4)
            self.wfile.write(b"end")
        elif route.startswith("/flaky/"):
            with state.lock:
                state.attempts[route] += 1
                attempt = state.attempts[route]
            if attempt <= int(params.get("fail", 1)):
                retry_after = {"Retry-After": params["retry_after"]} if "retry_after" in params else {}
                self.send(int(params.get("status", 503)), b"busy", retry_after)
            else:
                self.send(200, PNG)
        elif route.startswith("/slow/"):
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            time.sleep(0.15)
            with state.lock:
                state.in_flight -= 1
            self.send(200, route.rsplit("/", 1)[1].encode())
        else:
            self.send(404, b"no such thing")


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the (bounded) handler threads

    def handle_error(self, request, client_address) -> None:
        pass  # a refused TLS handshake or a client hanging up is part of the tests


def start(server: Server) -> threading.Thread:
    server.state = State()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    return thread


def stop(server: Server, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = start(httpd)
    yield httpd
    stop(httpd, thread)


@pytest.fixture
def base(server) -> str:
    """The server's URL, with a fresh record of what it saw."""
    server.state = State()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def connects(monkeypatch) -> list[tuple]:
    """Every address the fetcher connects to, in order."""
    seen: list[tuple] = []
    real = fetch.open_socket

    def spy(family, sockaddr, timeout):
        seen.append(sockaddr)
        return real(family, sockaddr, timeout)

    monkeypatch.setattr(fetch, "open_socket", spy)
    return seen


def refused(url: str, policy: FetchPolicy, match: str) -> str:
    with pytest.raises(ImageError, match=match) as caught:
        fetch_url(url, policy=policy)
    message = str(caught.value)
    assert message.startswith(f"{url}: "), message
    return message


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("2002:7f00:1::", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("fd12::1", "private"), ("::ffff:10.0.0.1", "private"), ("64:ff9b::a00:1", "private"),
    ("169.254.169.254", "cloud metadata"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("0.1.2.3", "unspecified"), ("100.64.0.1", "CGNAT"),
    ("fec0::1", "site-local"),
])
def test_non_public_addresses_are_named(address, kind):
    reason = classify_address(address)
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address):
    assert classify_address(address) is None


def test_allowlisted_loopback_serves_the_image(base, server):
    assert fetch_url(f"{base}/image.png", policy=LOCAL) == PNG
    assert server.state.hosts == [base.removeprefix("http://")]


@pytest.mark.parametrize("spelling, shown", [
    ("127.0.0.1", "127.0.0.1 is a loopback"), ("localhost", "'localhost' resolves to 127.0.0.1, a loopback"),
    ("[::1]", "::1 is a loopback"), ("[::ffff:127.0.0.1]", "loopback"), ("2130706433", "127.0.0.1, a loopback"),
    ("127.1", "127.0.0.1, a loopback"), ("0.0.0.0", "0.0.0.0 is an unspecified"),
])
def test_loopback_is_refused_before_connecting(base, server, connects, spelling, shown):
    url = f"http://{spelling}:{server.server_address[1]}/image.png"
    refused(url, FetchPolicy(), f"refused: .*{shown}")
    assert connects == [] and server.state.paths == []


@pytest.mark.parametrize("target, shown", [
    ("http://10.0.0.1/x.png", "10.0.0.1 is a private address"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://localhost:{port}/image.png", "'localhost' resolves to 127.0.0.1, a loopback"),
    ("http://[::1]:{port}/image.png", "::1 is a loopback"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
])
@pytest.mark.parametrize("status", [302, 307])
def test_redirect_targets_are_checked_again(base, server, connects, target, shown, status):
    policy = FetchPolicy(allow_hosts={"127.0.0.1"})  # allowed by name: the redirect is to another host
    target = target.format(port=server.server_address[1])
    message = refused(f"{base}/to?url={quote(target)}&status={status}", policy, f"refused: .*{shown}")
    assert f"after redirect to {target}" in message
    assert [address[0] for address in connects] == ["127.0.0.1"] and server.state.paths == ["/to"]


def test_redirects_are_followed_up_to_the_limit(base, server):
    policy = FetchPolicy(allow_networks=("127.0.0.0/8",), max_redirects=3)
    assert fetch_url(f"{base}/redirect/3", policy=policy) == PNG
    assert fetch_url(f"{base}/to?url={quote(base + '/image.png')}&status=308", policy=policy) == PNG
    server.state.paths.clear()
    refused(f"{base}/redirect/4", policy, r"too many redirects \(limit 3\)")
    assert server.state.paths == ["/redirect/4", "/redirect/3", "/redirect/2", "/redirect/1"]


def test_the_connection_goes_to_the_checked_address(base, server, connects, monkeypatch):
    port = server.server_address[1]
    real = socket.getaddrinfo
    answers = iter([("127.0.0.1", port)])  # the first answer is checked; a rebinding second one must never be used

    def resolve(host, *args, **kwargs):
        if host != "images.example":
            return real(host, *args, **kwargs)
        sockaddr = next(answers, ("10.9.9.9", port))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", sockaddr)]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", resolve)
    url = f"http://images.example:{port}/host"
    assert fetch_url(url, policy=LOCAL) == f"images.example:{port}".encode()
    assert connects == [("127.0.0.1", port)]
    assert next(answers, None) is None  # resolved once, and the one connection went to that answer


def test_every_resolved_address_must_be_public(connects, monkeypatch):
    def resolve(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ("93.184.216.34", "10.0.0.7")]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", resolve)
    refused("http://mixed.example/a.png", FetchPolicy(), "'mixed.example' resolves to 10.0.0.7, a private address")
    assert connects == []


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://127.0.0.1:70/_x", "data:image/png;base64,AAAA",
    "javascript:alert(1)", "/relative/x.png",
])
def test_only_http_and_https(url, connects):
    refused(url, LOCAL, r"refused: scheme '.*' is not allowed \(http and https only\)")
    assert connects == []


def test_credentials_and_bad_hosts_are_refused(connects):
    refused("http://user:pw@127.0.0.1/x.png", LOCAL, "credentials")
    refused("http://exa mple.com/x.png", LOCAL, "bad host name")
    assert connects == []


def test_http_errors_name_the_status_and_are_not_retried(base, server):
    refused(f"{base}/missing", LOCAL, r"HTTP 404 Not Found$")
    refused(f"{base}/flaky/teapot?fail=9&status=418", LOCAL, r"HTTP 418")
    assert server.state.paths == ["/missing", "/flaky/teapot"]


def test_busy_server_is_retried_with_backoff(base, server):
    assert fetch_url(f"{base}/flaky/a?fail=2", policy=LOCAL) == PNG
    assert server.state.attempts["/flaky/a"] == 3
    refused(f"{base}/flaky/b?fail=9&status=502", LOCAL, r"HTTP 502 Bad Gateway \(after 3 attempts\)")
    assert server.state.attempts["/flaky/b"] == 3
    assert fetch_url(f"{base}/flaky/c?fail=1&status=429&retry_after=0", policy=LOCAL) == PNG
    refused(f"{base}/flaky/d?fail=9&status=429&retry_after=120", LOCAL, r"HTTP 429 .*Retry-After 120 s is over")
    assert server.state.attempts["/flaky/d"] == 1


def test_connection_errors_and_stalls_are_retried(base, server, connects):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    refused(f"http://127.0.0.1:{free}/x.png", LOCAL, r"connection refused \(after 3 attempts\)")
    assert len(connects) == 3
    stalling = FetchPolicy(allow_networks=("127.0.0.1/32",), read_timeout=0.1, retries=1, backoff_base=0.001)
    refused(f"{base}/stall", stalling, r"no data for 0.1 s \(after 2 attempts\)")


def test_retry_delay_backs_off_and_honours_a_small_retry_after():
    policy = FetchPolicy(backoff_base=0.5, backoff_cap=2.0, max_retry_after=5.0)
    assert 0.25 <= retry_delay(policy, 0) <= 0.5 and 1.0 <= retry_delay(policy, 2) <= 2.0
    assert 1.0 <= retry_delay(policy, 10) <= 2.0  # capped
    assert retry_delay(policy, 0, retry_after=3.0) == 3.0
    assert retry_delay(policy, 0, retry_after=60.0) is None
    assert parse_retry_after("7") == 7.0 and parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: now


def test_byte_cap_is_enforced_up_front_and_while_streaming(base):
    small = FetchPolicy(allow_networks=("127.0.0.1/32",), max_bytes=1000)
    refused(f"{base}/big-declared", small, r"larger than the 1000-byte limit \(Content-Length 1000000000\)")
    refused(f"{base}/big-stream", small, r"larger than the 1000-byte limit$")
    assert fetch_url(f"{base}/image.png", policy=small) == PNG


@pytest.mark.parametrize("phase", ["body", "headers"])
def test_a_slow_drip_cannot_outlast_the_deadline(base, phase):
    policy = FetchPolicy(allow_networks=("127.0.0.1/32",), deadline=0.3, read_timeout=5.0)
    started = time.monotonic()
    refused(f"{base}/drip?phase={phase}", policy, r"timed out after 0.3 s$")
    assert time.monotonic() - started < 1.0


def test_fetch_many_keeps_order_and_the_concurrency_limit(base, server):
    urls = [f"{base}/slow/{i}" for i in range(4)] + [f"{base}/missing", "http://10.0.0.1/x.png"]
    urls += [f"{base}/slow/{i}" for i in range(4, 8)]
    results = fetch_many(urls, policy=FetchPolicy(allow_networks=("127.0.0.1/32",), max_concurrency=3))
    assert results[:4] + results[6:] == [str(i).encode() for i in range(8)]
    assert isinstance(results[4], ImageError) and "HTTP 404" in str(results[4])
    assert isinstance(results[5], ImageError) and "10.0.0.1 is a private address" in str(results[5])
    assert 2 <= server.state.max_in_flight <= 3
    assert fetch_many([], policy=LOCAL) == []


def test_policy_is_validated_and_normalised():
    policy = FetchPolicy(allow_hosts=["Images.Example."], allow_networks=["10.1.2.3/8"])
    assert policy.allow_hosts == frozenset({"images.example"}) and str(policy.allow_networks[0]) == "10.0.0.0/8"
    for bad in ({"deadline": 0}, {"max_bytes": 0}, {"retries": -1}, {"allow_networks": ["not-a-net"]},
                {"user_agent": "x\r\nHost: evil"}):
        with pytest.raises(ValueError):
            FetchPolicy(**bad)
    with pytest.raises(TypeError):
        FetchPolicy(5.0)  # keyword-only


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory):
    """An https server for images.test on 127.0.0.1, its certificate signed by a throwaway CA."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=30)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=vitrina test CA")
    run("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=images.test")
    (folder / "ext.cnf").write_text("subjectAltName=DNS:images.test\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = start(httpd)
    context.sni_callback = lambda sslobj, name, ctx: httpd.state.sni.append(name)
    yield httpd, str(folder / "ca.pem")
    stop(httpd, thread)


def test_https_verifies_the_hostname_over_the_pinned_address(tls_site, monkeypatch):
    httpd, ca_file = tls_site
    port = httpd.server_address[1]
    real = socket.getaddrinfo
    monkeypatch.setattr(fetch.socket, "getaddrinfo", lambda host, *a, **k: real(
        "127.0.0.1" if host == "images.test" else host, *a, **k))
    trusted = FetchPolicy(allow_hosts={"images.test", "127.0.0.1"}, ca_file=ca_file, retries=0)
    assert fetch_url(f"https://images.test:{port}/host", policy=trusted) == f"images.test:{port}".encode()
    assert httpd.state.sni == ["images.test"]
    refused(f"https://images.test:{port}/host", FetchPolicy(allow_hosts={"images.test"}, retries=0),
            "TLS certificate verification failed for images.test")
    refused(f"https://127.0.0.1:{port}/host", trusted, "TLS certificate verification failed for 127.0.0.1")
    assert httpd.state.paths == ["/host"]
