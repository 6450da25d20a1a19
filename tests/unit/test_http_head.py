"""The HTTP request head / TLS ClientHello inspector (kumoflow.packet.http) on real client bytes:
what curl and Python's http.client send to a listener on 127.0.0.1, ClientHellos from curl and
from Python's ssl module (memory BIO), cut at every byte; malformed and hostile heads; fuzzing;
and the rule patterns."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import struct
import subprocess
import threading

import pytest
from hypothesis import given, settings, strategies as st

from kumoflow.packet.http import (MAX_HEAD, NEED_MORE, HostPattern, NotHttp, PathPrefix, PatternError, Reader,
                                  Request, host_of, inspect, normalise_path)


# --- capturing what real clients send ----------------------------------------------------------


class Listener:
    """Accepts one connection on 127.0.0.1, keeps the client's bytes until the inspector decides
    (or the client stops), answers 204 to HTTP, and closes."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.data = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            while inspect(self.data) is NEED_MORE:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                self.data += chunk
            if isinstance(inspect(self.data), Request):
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    def captured(self) -> bytes:
        self.thread.join(15)
        self.sock.close()
        return self.data


def curl(*args: str) -> bytes:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    listener = Listener()
    args = tuple(a.replace("PORT", str(listener.port)) for a in args)
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "10", "--noproxy", "", *args], check=False, timeout=20)
    return listener.captured()


def python_client(method: str, url: str, headers: dict | None = None) -> bytes:
    listener = Listener()
    conn = http.client.HTTPConnection("127.0.0.1", listener.port, timeout=10)
    conn.request(method, url, headers=headers or {})
    conn.getresponse().read()
    conn.close()
    return listener.captured()


def client_hello(server_hostname: str | None) -> bytes:
    """The ClientHello of Python's ssl module (OpenSSL), through memory BIOs: no network."""
    ctx = ssl.create_default_context()
    if server_hostname is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def assert_every_cut(data: bytes, verdict) -> None:
    """Every proper prefix up to the decision needs more; the whole decides `verdict`; fed in
    pieces, a Reader decides the same."""
    whole = inspect(data)
    assert whole == verdict
    decided_at = next(n for n in range(len(data) + 1) if inspect(data[:n]) is not NEED_MORE)
    for n in range(decided_at):
        assert inspect(data[:n]) is NEED_MORE, n
    assert inspect(data[:decided_at]) == verdict
    for size in (1, 7, 100):
        reader = Reader()
        for i in range(0, len(data), size):
            got = reader.feed(data[i:i + size])
        assert got == verdict


# --- real clients --------------------------------------------------------------------------------


def test_curl_request_with_dot_segments():
    data = curl("--path-as-is", "-H", "Host: Shop.Example.TEST.:8080", "http://127.0.0.1:PORT/a/b/../../admin/./x?q=1")
    assert data.startswith(b"GET /a/b/../../admin/./x?q=1 HTTP/1.1\r\n")
    got = inspect(data)
    assert got == Request("GET", "/a/b/../../admin/./x?q=1", "/admin/x", "shop.example.test", "HTTP/1.1", len(data))
    assert_every_cut(data, got)
    assert PathPrefix("/admin").matches(got.path) and HostPattern("*.example.test").matches(got.host)


def test_curl_through_a_proxy_sends_absolute_form_whose_authority_wins():
    data = curl("--path-as-is", "-x", "http://127.0.0.1:PORT", "http://WWW.Example.test:81/%7Euser/../Admin")
    assert data.startswith(b"GET http://WWW.Example.test:81/%7Euser/../Admin HTTP/1.1\r\n")
    got = inspect(data)
    assert (got.host, got.path) == ("www.example.test", "/Admin")
    assert PathPrefix("/admin", ignore_case=True).matches(got.path) and not PathPrefix("/admin").matches(got.path)


def test_curl_post_with_a_body_decides_on_the_head():
    data = curl("--data-binary", "GET /admin HTTP/1.1\r\nHost: evil.test\r\n\r\n", "-H", "Host: ok.test",
                "http://127.0.0.1:PORT/form")
    got = inspect(data)
    assert (got.method, got.path, got.host) == ("POST", "/form", "ok.test")
    assert b"evil.test" not in data[:got.head_length]          # the body (another request's bytes) is not the head


def test_python_http_client():
    data = python_client("GET", "/search?q=a", {"Host": "docs.example.test"})
    got = inspect(data)
    assert (got.method, got.path, got.host, got.version) == ("GET", "/search", "docs.example.test", "HTTP/1.1")
    assert_every_cut(data, got)
    # http.client's own Host (the address and port it connects to)
    got = inspect(python_client("HEAD", "/"))
    assert got.method == "HEAD" and got.host == "127.0.0.1"


def test_python_http_client_absolute_form():
    got = inspect(python_client("GET", "http://Api.Example.test/v1/../v2/items"))
    assert (got.host, got.path) == ("api.example.test", "/v2/items")


def test_pipelined_requests_only_the_first_decides():
    first = python_client("GET", "/one", {"Host": "a.test"})
    data = first + b"GET /admin HTTP/1.1\r\nHost: b.test\r\n\r\n"
    got = inspect(data)
    assert (got.path, got.host, got.head_length) == ("/one", "a.test", len(first))


def test_curl_https_client_hello_names_the_server():
    data = curl("-k", "--resolve", "secure.example.test:PORT:127.0.0.1", "https://secure.example.test:PORT/admin")
    got = inspect(data)
    assert got == NotHttp("TLS ClientHello", tls=True, server_name="secure.example.test")
    assert host_of(got) == "secure.example.test" and HostPattern("*.example.test").matches(host_of(got))
    assert_every_cut(data, got)


def test_python_ssl_client_hello():
    data = client_hello("Shop.Example.test")
    got = inspect(data)
    assert got == NotHttp("TLS ClientHello", tls=True, server_name="shop.example.test")
    assert_every_cut(data, got)
    assert inspect(client_hello(None)) == NotHttp("TLS ClientHello without server_name", tls=True)


def test_client_hello_over_several_records():
    data = client_hello("split.example.test")
    body = data[5:]
    records = b"".join(data[:3] + struct.pack("!H", len(part)) + part
                       for part in (body[:10], body[10:11], body[11:200], body[200:]))
    assert_every_cut(records, NotHttp("TLS ClientHello", tls=True, server_name="split.example.test"))
    many = b"".join(data[:3] + struct.pack("!H", 1) + body[i:i + 1] for i in range(20))
    assert inspect(many) == NotHttp("TLS: a ClientHello over more than 8 records", tls=True)


def _hello(extensions: list[tuple[int, bytes]]) -> bytes:
    """A ClientHello built by hand (for what OpenSSL does not send)."""
    exts = b"".join(struct.pack("!HH", kind, len(data)) + data for kind, data in extensions)
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def _sni(name: bytes) -> tuple[int, bytes]:
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    return 0, struct.pack("!H", len(entry)) + entry


def test_client_hello_edge_cases():
    assert inspect(_hello([_sni(b"public.example.test"), (0xfe0d, b"\x00" * 8)])) == NotHttp(
        "TLS ClientHello", tls=True, server_name="public.example.test", ech=True)
    assert inspect(_hello([_sni(b"a.test."), (10, b"\x00\x02\x00\x1d")])).server_name == "a.test"
    for bad in (_sni(b"bad name"), _sni(b"\xff.test"), _sni(b""), (0, b"\x00\x09\x00\x00\x02ab")):
        got = inspect(_hello([bad]))
        assert got.tls and got.server_name is None and "ClientHello" in got.reason, bad
    assert "twice" in inspect(_hello([_sni(b"a.test"), _sni(b"b.test")])).reason
    hello = _hello([_sni(b"a.test")])
    assert inspect(hello[:5] + b"\x02" + hello[6:]).reason == "TLS: the first handshake message is not a ClientHello"
    assert inspect(b"\x16\x03\x01\x40\x01" + bytes(10)) == NotHttp("TLS: a record of 16385 bytes", tls=True)
    assert inspect(b"\x16\x03\x01\x00\x04\x01\x00\x40\x00").reason.startswith("TLS: a ClientHello of 16384 bytes")
    assert inspect(b"\x16\x09\x09\x00\x04") == NotHttp("not HTTP, and not a TLS record")
    # a length inside that runs past what holds it: the cipher suites'
    assert inspect(hello[:44] + b"\xff\xff" + hello[46:]) == NotHttp("ClientHello: a length runs past its end",
                                                                   tls=True)


# --- requests, malformed and hostile -------------------------------------------------------------


@pytest.mark.parametrize("head, path, host", [
    (b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", "/", "a.test"),
    (b"\r\n\r\nGET /x HTTP/1.1\nHost: a.test\n\n", "/x", "a.test"),                    # bare LF, leading empty lines
    (b"GET /x HTTP/1.0\r\n\r\n", "/x", None),                                           # 1.0: Host optional
    (b"GET /x HTTP/1.1\r\nHost:\r\n\r\n", "/x", None),                                  # empty Host
    (b"GET /x HTTP/1.1\r\nhOsT:   A.Test:443  \r\n\r\n", "/x", "a.test"),
    (b"GET /x HTTP/1.1\r\nHost: [2001:DB8::0:1]:8443\r\n\r\n", "/x", "2001:db8::1"),
    (b"GET /x HTTP/1.1\r\nHost: 192.0.2.7:80\r\n\r\n", "/x", "192.0.2.7"),
    (b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", "*", "a.test"),
    (b"CONNECT b.test:443 HTTP/1.1\r\nHost: b.test:443\r\n\r\n", "", "b.test"),
    (b"GET https://c.test HTTP/1.1\r\nHost: other.test\r\n\r\n", "/", "c.test"),
    (b"GET http://c.test?x=/admin HTTP/1.1\r\nHost: c.test\r\n\r\n", "/", "c.test"),
])
def test_requests(head, path, host):
    got = inspect(head)
    assert isinstance(got, Request) and (got.path, got.host) == (path, host)
    assert got.head_length == len(head)


@pytest.mark.parametrize("head, reason", [
    (b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", "more than one Host"),
    (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 request without Host"),
    (b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n", "malformed header field"),
    (b"GET / HTTP/1.1\r\nHost: a.test\r\n folded\r\n\r\n", "obsolete line folding"),
    (b"GET / HTTP/1.1\r\nHost: a\x00.test\r\n\r\n", "control characters"),
    (b"GET / HTTP/1.1\r\nHost: a test\r\n\r\n", "malformed host"),
    (b"GET / HTTP/1.1\r\nHost: a..test\r\n\r\n", "malformed host"),
    (b"GET / HTTP/1.1\r\nHost: a.test:http\r\n\r\n", "malformed port"),
    (b"GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", "IPv6 literal"),
    (b"GET / HTTP/1.1\r\nHost: \xc3\xa9.test\r\n\r\n", "malformed host"),
    (b"GET http://user@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", "user info"),
    (b"GET  / HTTP/1.1\r\nHost: a.test\r\n\r\n", "malformed request line"),
    (b"GET /\xff HTTP/1.1\r\nHost: a.test\r\n\r\n", "malformed request-target"),
    (b"GET / HTTP/3.0\r\nHost: a.test\r\n\r\n", "is not HTTP/1"),
    (b"GET / HTTP/1.1x\r\n\r\n", "malformed HTTP version"),
    (b"GET a.test HTTP/1.1\r\nHost: a.test\r\n\r\n", "is not a path"),
    (b"GET * HTTP/1.1\r\nHost: a.test\r\n\r\n", "OPTIONS only"),
    (b"CONNECT a.test HTTP/1.1\r\nHost: a.test\r\n\r\n", "without a port"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/2 with prior knowledge"),
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "malformed request line"),
    (b"\x00\x01binary", "first byte cannot start a method"),
    (b"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ", "no method"),
    (b"GET\x01/", "no method"),
])
def test_malformed_heads_are_not_http(head, reason):
    got = inspect(head)
    assert isinstance(got, NotHttp) and not got.tls and reason in got.reason, got


def test_bounded_buffering():
    long_head = b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Pad: " + b"a" * MAX_HEAD
    assert inspect(long_head[:MAX_HEAD - 1]) is NEED_MORE
    assert inspect(long_head) == NotHttp(f"request head longer than {MAX_HEAD} bytes")
    assert inspect(b"GET /" + b"a" * MAX_HEAD) == NotHttp(f"request line longer than {MAX_HEAD} bytes")
    assert inspect(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", max_head=20).reason.startswith("request head longer")
    assert inspect(b"\r\n" * MAX_HEAD).reason == f"no request line in {MAX_HEAD} bytes"
    reader = Reader()
    for _ in range(100):
        got = reader.feed(b"x" * 1000 if reader.buffer else b"GET /" + b"x" * 995)
    assert isinstance(got, NotHttp) and len(reader.buffer) == 0
    assert reader.feed(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n") is got          # decided once


@pytest.mark.parametrize("raw, path", [
    ("/a/b/c/./../../g", "/a/g"),                 # RFC 3986 section 5.2.4's example
    ("/a/../admin", "/admin"),
    ("/../../admin", "/admin"),
    ("/admin/.", "/admin/"),
    ("/admin/x/..", "/admin/"),
    ("/%61dmin", "/admin"),                       # unreserved decoded
    ("/a/%2e%2E/admin", "/admin"),                # ... before dot segments go
    ("/%7euser/%41%2d%5f", "/~user/A-_"),
    ("/a%2fb%3a", "/a%2Fb%3A"),                   # reserved stay encoded, hex uppercased
    ("//admin///x", "/admin/x"),                  # slashes merged
    ("/x?/admin", "/x"),
])
def test_path_normalisation(raw, path):
    assert normalise_path(raw) == path


def test_ambiguous_paths_are_reported():
    def amb(target: bytes):
        return inspect(b"GET " + target + b" HTTP/1.1\r\nHost: a.test\r\n\r\n").ambiguous
    assert amb(b"/admin") is None
    assert amb(b"/x/..%2Fadmin") == "an encoded / (%2F)"
    assert amb(b"/x/..%5cadmin") == "an encoded backslash (%5C)"
    assert amb(b"/x\\..\\admin") == "a backslash"
    assert amb(b"/admin;jsessionid=1") == "a ; parameter"
    assert amb(b"/%zz%4") == "a bad percent sequence"


# --- fuzzing: garbage never raises ----------------------------------------------------------------

REAL = [b"GET /a/../b?x HTTP/1.1\r\nHost: a.test:80\r\nAccept: */*\r\n\r\n",
        b"GET http://h.test/x HTTP/1.1\r\nHost: h.test\r\n\r\n", _hello([_sni(b"a.test"), (0xfe0d, b"xy")])]


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 400))
def test_garbage_never_raises(data, max_head):
    for got in (inspect(data), inspect(data, max_head=max_head), inspect(b"\x16\x03\x01" + data),
                inspect(b"GET /" + data), inspect(b"GET / HTTP/1.1\r\n" + data)):
        assert got is NEED_MORE or isinstance(got, (Request, NotHttp))


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(REAL), st.lists(st.tuples(st.integers(0, 400), st.binary(min_size=0, max_size=3)), max_size=4))
def test_mutated_real_heads_never_raise(base, edits):
    data = bytearray(base)
    for at, chunk in edits:
        at %= len(data) + 1
        data[at:at + len(chunk)] = chunk
    got = inspect(bytes(data))
    assert got is NEED_MORE or isinstance(got, (Request, NotHttp))
    if isinstance(got, Request):
        assert got.path == "" or got.path == "*" or got.path.startswith("/")


# --- rule patterns --------------------------------------------------------------------------------


def test_host_patterns():
    wild = HostPattern("*.Example.test")
    assert wild.matches("sub.example.test") and wild.matches("a.b.example.test") and wild.matches("X.Example.Test.")
    assert not wild.matches("example.test") and not wild.matches("badexample.test") and not wild.matches(None)
    exact = HostPattern("example.test.")
    assert exact.matches("example.test") and not exact.matches("www.example.test")
    assert HostPattern("[2001:db8::0:1]").matches("2001:db8::1") and HostPattern("192.0.2.1").matches("192.0.2.1")
    for bad in ("*", "a.*.test", "*example.test", "ex ample.test", "", "*.192.0.2.1", "a..test", "*.[::1]", "é.test"):
        with pytest.raises(PatternError):
            HostPattern(bad)


def test_path_prefixes():
    admin = PathPrefix("/admin")
    assert admin.matches("/admin") and admin.matches("/admin/") and admin.matches("/admin/x/y")
    assert not admin.matches("/administrator") and not admin.matches("/") and not admin.matches("/x/admin")
    assert not admin.matches(None) and not admin.matches("/ADMIN")
    assert PathPrefix("/admin/").matches("/admin") and PathPrefix("/%61dmin").matches("/admin/x")
    assert PathPrefix("/ADMIN", ignore_case=True).matches("/Admin/x")
    everything = PathPrefix("/")
    assert everything.matches("/") and everything.matches("/x") and everything.matches("*")
    for bad in ("admin", "", "/a b", "/a?x", "/é", "/a#b"):
        with pytest.raises(PatternError):
            PathPrefix(bad)
