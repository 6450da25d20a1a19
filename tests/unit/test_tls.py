"""kumoflow.pki (the CA and certificates) and kumoflow.tls (contexts, rotation), and the
controller and switch runtimes over ssl: on loopback (no root): a switch with a certificate
from the CA comes up, one from another CA or with none is refused and logged, the switch
checks the controller's name, and rotated files serve the next connection."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import re
import ssl
import stat
import types

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kumoflow import pki
from kumoflow.controller import Controller
from kumoflow.switch.port import MemoryPort
from kumoflow.switch.runtime import Switch
from kumoflow.tls import TlsContexts, TlsFiles, client_context, from_args, server_context

from test_switch_channel import run, until


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def files(d, name) -> TlsFiles:
    return TlsFiles.of(d / f"{name}.key", d / f"{name}.pem", d / "ca.pem")


@pytest.fixture
def ca(tmp_path):
    d = tmp_path / "pki"
    pki.init(d)
    pki.issue(d, "ctl", kind="controller", sans=["192.0.2.10", "ctl.example"])
    pki.issue(d, "sw1", kind="switch")
    return d


def test_ca_and_certificates_verify_with_names_modes_and_validity(ca):
    ca_cert = load(ca / "ca.pem")
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in ("ctl", "sw1"):
        cert = load(ca / f"{name}.pem")
        cert.verify_directly_issued_by(ca_cert)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
        days = (cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).days
        assert pki.CERT_DAYS - 2 <= days <= pki.CERT_DAYS
        assert cert.not_valid_before_utc <= datetime.datetime.now(datetime.timezone.utc)
        assert stat.S_IMODE(os.stat(ca / f"{name}.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca / "ca.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca).st_mode) == 0o700
    san = load(ca / "ctl.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"ctl", "ctl.example", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address(a) for a in
                                                             ("192.0.2.10", "127.0.0.1", "::1")}
    san = load(ca / "sw1.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["sw1"] and not san.get_values_for_type(x509.IPAddress)


def test_pki_errors(tmp_path, ca):
    with pytest.raises(pki.PkiError, match="no CA there.*kumoflow pki init"):
        pki.issue(tmp_path / "empty", "x")
    with pytest.raises(pki.PkiError, match="has a CA already"):
        pki.init(ca)
    with pytest.raises(pki.PkiError, match="exists; --force"):
        pki.issue(ca, "sw1")
    with pytest.raises(pki.PkiError, match="DNS name or an IP address"):
        pki.issue(ca, "sw2", sans=["not a name"])
    with pytest.raises(pki.PkiError, match="--kind"):
        pki.issue(ca, "sw2", kind="router")
    with pytest.raises(pki.PkiError, match="name"):
        pki.issue(ca, "../evil")
    old = load(ca / "sw1.pem").serial_number
    pki.issue(ca, "sw1", force=True)
    assert load(ca / "sw1.pem").serial_number != old
    # never valid beyond the CA
    short = tmp_path / "short"
    pki.init(short, days=10)
    pki.issue(short, "s")
    assert load(short / "s.pem").not_valid_after_utc <= load(short / "ca.pem").not_valid_after_utc


def test_pki_command(tmp_path, capsys):
    from kumoflow.cli import main
    d = tmp_path / "p"
    assert main(["pki", "cert", str(d), "x"]) == 1
    assert "no CA there" in capsys.readouterr().err
    assert main(["pki", "init", str(d)]) == 0
    assert main(["pki", "cert", str(d), "c1", "--kind", "controller", "--san", "10.1.2.3"]) == 0
    assert (d / "c1.pem").exists() and (d / "c1.key").exists()


def test_contexts_require_tls12_and_a_peer_certificate(ca):
    s = server_context(files(ca, "ctl"))
    c = client_context(files(ca, "sw1"))
    assert s.verify_mode == ssl.CERT_REQUIRED and c.verify_mode == ssl.CERT_REQUIRED
    assert s.minimum_version == c.minimum_version == ssl.TLSVersion.TLSv1_2
    assert c.check_hostname


def test_contexts_reload_when_files_change_and_keep_the_last_good_one(ca, caplog):
    tls = TlsContexts(files(ca, "ctl"), server_side=True)
    first = tls.context()
    assert tls.context() is first and tls.loads == 1
    pki.issue(ca, "ctl", kind="controller", force=True)
    second = tls.context()
    assert second is not first and tls.loads == 2
    (ca / "ctl.key").write_bytes((ca / "sw1.key").read_bytes())    # a key that does not match
    with caplog.at_level(logging.ERROR, "kumoflow.tls"):
        assert tls.context() is second and tls.context() is second
    assert caplog.text.count("do not load") == 1


def test_from_args_checks_the_options(ca):
    def ns(**kw):
        return types.SimpleNamespace(**{"tls_key": None, "tls_cert": None, "tls_ca": None, **kw})
    assert from_args(ns(), ["tcp:127.0.0.1:6653"], "--listen", server_side=True) is None
    with pytest.raises(ValueError, match="needs --tls-key, --tls-cert and --tls-ca"):
        from_args(ns(tls_key="k"), ["ssl:127.0.0.1:6653"], "--listen", server_side=True)
    with pytest.raises(ValueError, match="only with"):
        from_args(ns(tls_key="k"), ["tcp:127.0.0.1:6653"], "--listen", server_side=True)
    f = files(ca, "ctl")
    with pytest.raises(ValueError, match="no such file"):
        from_args(ns(tls_key=str(f.key), tls_cert=str(ca / "nope.pem"), tls_ca=str(f.ca)),
                  ["ssl:127.0.0.1:6653"], "--listen", server_side=True)
    tls = from_args(ns(tls_key=str(f.key), tls_cert=str(f.cert), tls_ca=str(f.ca)),
                    ["tcp:127.0.0.1:1", "ssl:127.0.0.1:6653"], "--listen", server_side=True)
    assert tls.server_side and tls.loads == 1


# --- the runtimes over ssl: on loopback ---------------------------------------------------------


async def controller_on(ca, name="ctl") -> tuple[Controller, int]:
    ctl = Controller([], tls=TlsContexts(files(ca, name), server_side=True), echo_interval=5, echo_timeout=15)
    [bound] = await ctl.start(["ssl:127.0.0.1:0", ])
    assert bound.scheme == "ssl"
    return ctl, bound.port


async def switch_to(d, name, target, dpid=1, ca=None) -> Switch:
    f = files(d, name)
    if ca is not None:                                   # trusting another CA than the one that signed it
        f = TlsFiles(f.key, f.cert, ca / "ca.pem")
    switch = Switch(dpid, {1: MemoryPort(1, "m1")}, controllers=[target], tick_interval=0.1,
                    tls=TlsContexts(f, server_side=False))
    switch.channels.min_backoff = switch.channels.max_backoff = 0.1
    await switch.start()
    return switch


def test_switch_with_a_ca_certificate_comes_up_beside_tcp(ca, caplog):
    async def main():
        ctl = Controller([], tls=TlsContexts(files(ca, "ctl"), server_side=True))
        ssl_addr, tcp_addr = await ctl.start(["ssl:127.0.0.1:0", "tcp:127.0.0.1:0"])
        a = await switch_to(ca, "sw1", f"ssl:127.0.0.1:{ssl_addr.port}", dpid=1)
        b = Switch(2, {1: MemoryPort(1, "m1")}, controllers=[f"tcp:127.0.0.1:{tcp_addr.port}"], tick_interval=0.1)
        await b.start()
        await until(lambda: set(ctl.datapaths) == {1, 2} and a.channels.controller_connected)
        await a.stop()
        await b.stop()
        await ctl.stop()
    with caplog.at_level(logging.INFO):
        run(main())
    m = re.search(r"TLS peer 127\.0\.0\.1:\d+ verified: CN=sw1 serial=([0-9A-F]+) \(TLSv1\.3\)", caplog.text)
    assert m and int(m.group(1), 16) == load(ca / "sw1.pem").serial_number


def test_switch_of_another_ca_or_without_a_certificate_is_refused_and_logged(ca, tmp_path, caplog):
    other = tmp_path / "other"
    pki.init(other)
    pki.issue(other, "sw1")

    async def main():
        ctl, port = await controller_on(ca)
        # a switch that trusts our CA but has a certificate of its own CA
        switch = await switch_to(other, "sw1", f"ssl:127.0.0.1:{port}", ca=ca)
        await until(lambda: "refused: certificate verify failed" in caplog.text)
        assert not ctl.datapaths and not switch.channels.controller_connected
        await switch.stop()
        # a switch that trusts only its own CA refuses the controller
        caplog.clear()
        switch = await switch_to(other, "sw1", f"ssl:127.0.0.1:{port}")
        await until(lambda: "cannot connect (certificate verify failed" in caplog.text)
        await until(lambda: "did it refuse our certificate?" in caplog.text)
        assert not ctl.datapaths
        await switch.stop()
        # a client with no certificate at all
        bare = ssl.create_default_context(cafile=str(ca / "ca.pem"))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=bare,
                                                           server_hostname="127.0.0.1")
            await reader.read(1)         # TLS 1.3: the refusal comes after the client's handshake
            writer.close()
        except (OSError, ssl.SSLError):
            pass
        await until(lambda: "did not return a certificate" in caplog.text)
        assert not ctl.datapaths
        await ctl.stop()
    with caplog.at_level(logging.INFO):
        run(main())
    assert "TLS peer 127.0.0.1:" in caplog.text


def test_switch_checks_the_controller_name(ca, caplog):
    async def main():
        ctl, port = await controller_on(ca, "sw1")      # a certificate that does not name 127.0.0.1
        switch = await switch_to(ca, "sw1", f"ssl:127.0.0.1:{port}")
        await until(lambda: "IP address mismatch" in caplog.text)
        assert not ctl.datapaths
        await switch.stop()
        await ctl.stop()
    with caplog.at_level(logging.INFO):
        run(main())


def test_rotated_certificates_serve_the_next_connection(ca, caplog):
    async def main():
        ctl, port = await controller_on(ca)
        switch = await switch_to(ca, "sw1", f"ssl:127.0.0.1:{port}")
        await until(lambda: 1 in ctl.datapaths)
        first = ctl.datapaths[1]
        pki.issue(ca, "ctl", kind="controller", force=True)
        pki.issue(ca, "sw1", force=True)
        serial = load(ca / "ctl.pem").serial_number
        # the established connection goes on; a new client sees the new controller certificate
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(files(ca, "sw1")),
                                                       server_hostname="127.0.0.1")
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert x509.load_der_x509_certificate(der).serial_number == serial
        writer.close()
        assert ctl.datapaths.get(1) is first
        # the switch reconnects with its new certificate
        for c in list(switch.channels.channels):
            c.close()
        await until(lambda: ctl.datapaths.get(1) not in (None, first))
        assert switch.channels.tls.loads == 2 and ctl.tls.loads == 2
        await switch.stop()
        await ctl.stop()
    with caplog.at_level(logging.INFO):
        run(main())
    assert "changed; new connections use the new files" in caplog.text


def test_api_over_https_with_the_same_pki(ca):
    import httpx

    from kumoflow.api.server import serve

    pki.issue(ca, "api", kind="controller")

    async def main():
        ctl = Controller([])
        api = await serve(ctl.core, "127.0.0.1", 0, admin_token="secret-token", tls_cert=ca / "api.pem",
                          tls_key=ca / "api.key")
        try:
            assert api.url.startswith("https://127.0.0.1:")
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca / "ca.pem"))) as c:
                r = await c.get(f"{api.url}/sdn/switches", headers={"X-Auth-Token": "secret-token"})
                assert r.status_code == 200, r.text
                r = await c.get(f"{api.url}/sdn/switches")
                assert r.status_code == 401
            async with httpx.AsyncClient() as c:          # a client that does not trust the CA
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await c.get(f"{api.url}/sdn/switches")
            async with httpx.AsyncClient(verify=False) as c:
                with pytest.raises(httpx.HTTPError):      # not plain HTTP
                    await c.get(api.url.replace("https:", "http:") + "/sdn/switches")
        finally:
            await api.stop()
    run(main())


def test_api_tls_options(ca):
    from kumoflow.api.options import parse

    def ns(**kw):
        base = dict(api="127.0.0.1:0", api_public=False, admin_token="t", admin_token_file="/nonexistent",
                    segment_range=[], api_tls_cert=None, api_tls_key=None)
        return types.SimpleNamespace(**{**base, **kw})
    with pytest.raises(ValueError, match="give both"):
        parse(ns(api_tls_cert=str(ca / "ctl.pem")))
    with pytest.raises(ValueError, match="only with --api"):
        parse(ns(api=None, api_tls_cert=str(ca / "ctl.pem"), api_tls_key=str(ca / "ctl.key")))
    with pytest.raises(ValueError, match="no such file"):
        parse(ns(api_tls_cert=str(ca / "x.pem"), api_tls_key=str(ca / "ctl.key")))
    options = parse(ns(api_tls_cert=str(ca / "ctl.pem"), api_tls_key=str(ca / "ctl.key")))
    assert options.tls_cert == ca / "ctl.pem" and options.tls_key == ca / "ctl.key"


def test_switch_accepts_a_controller_named_by_dns(ca):
    async def main():
        ctl, port = await controller_on(ca)              # ctl's certificate names localhost
        switch = await switch_to(ca, "sw1", f"ssl:localhost:{port}")
        await until(lambda: 1 in ctl.datapaths and switch.channels.controller_connected)
        await switch.stop()
        await ctl.stop()
    run(main())
