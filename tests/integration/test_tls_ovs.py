"""TLS with real processes: the kumoflow switch and Open vSwitch connecting to the kumoflow
controller over ssl: with certificates from `kumoflow pki`; a peer of another CA refused (and
logged) both ways; rotated certificates used by the next connection without a restart; the
API over HTTPS. `ovs-vsctl set-ssl` is global to the ovsdb: the SSL row found before the test
is put back afterwards, whatever happens."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from kumoflow import pki
from test_switch_support import ENV, SwitchProcess, _stop_pid, hosts_on_veths, ping, sh, wait_until


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def logged_serials(log: str, cn: str) -> list[int]:
    return [int(m, 16) for m in re.findall(rf"verified: CN={re.escape(cn)} serial=([0-9A-F]+)", log)]


def tls_args(d: Path, name: str, ca: Path | None = None) -> list[str]:
    return ["--tls-key", str(d / f"{name}.key"), "--tls-cert", str(d / f"{name}.pem"),
            "--tls-ca", str((ca or d) / "ca.pem")]


class TlsController:
    """`kumoflow controller --listen ssl:127.0.0.1:PORT` (port 0 at first, the same one on a
    restart) with the API over HTTPS on a free port."""

    def __init__(self, workdir: Path, d: Path) -> None:
        self.d, self.port, self.api = d, 0, ""
        self.log_file, self.status_file = workdir / "controller.log", workdir / "controller.json"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "TlsController":
        self.status_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "kumoflow.cli", "controller", "--app", "l2", "--store", "none",
                "--listen", f"ssl:127.0.0.1:{self.port}", *tls_args(self.d, "ctl"),
                "--api", "127.0.0.1:0", "--admin-token", "tls-test-token",
                "--api-tls-cert", str(self.d / "ctl.pem"), "--api-tls-key", str(self.d / "ctl.key"),
                "--status-file", str(self.status_file), "--log-level", "info"]
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=ENV)

        def status():
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return json.loads(self.status_file.read_text())
            except (OSError, ValueError):
                return None
        s = wait_until(status, 20, what="controller listening")
        [listen] = s["listen"]
        assert listen.startswith("ssl:127.0.0.1:")
        self.port, self.api = int(listen.rsplit(":", 1)[1]), s["api"]
        return self

    @property
    def target(self) -> str:
        return f"ssl:127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc)


@pytest.fixture
def pkis(tmp_path):
    d, other = tmp_path / "pki", tmp_path / "other"
    pki.init(d)
    pki.issue(d, "ctl", kind="controller")
    pki.issue(d, "sw1")
    pki.issue(d, "ovs")
    pki.init(other, common_name="another CA")
    pki.issue(other, "intruder")
    pki.issue(other, "ovs")
    return d, other


@pytest.fixture
def controller(tmp_path, pkis):
    ctl = TlsController(tmp_path, pkis[0]).start()
    try:
        yield ctl
    finally:
        ctl.stop()


@pytest.mark.root
def test_kumoflow_switch_over_ssl_refusal_rotation_and_https_api(unique_name, tmp_path, pkis, controller):
    d, other = pkis
    with hosts_on_veths(unique_name, 2) as hosts:
        switch = SwitchProcess(tmp_path, {1: hosts[0][1], 2: hosts[1][1]}, controllers=[controller.target],
                               extra=tls_args(d, "sw1"), listen=False).start()
        intruder = SwitchProcess(tmp_path, {}, dpid=2, controllers=[controller.target],
                                 extra=tls_args(other, "intruder", ca=d), listen=False)
        try:
            wait_until(lambda: switch.status()["connected"], 15, what="the switch connected over TLS")
            assert ping(hosts[0][0], hosts[1][2], count=2), controller.log()[-3000:]   # the l2 app's flows
            assert logged_serials(controller.log(), "sw1") == [serial_of(d / "sw1.pem")]

            # the API over HTTPS, verified against the same CA, with the token as over HTTP
            out = sh("curl", "-sS", "--cacert", str(d / "ca.pem"), "-H", "X-Auth-Token: tls-test-token",
                     f"{controller.api}/sdn/switches").stdout
            assert controller.api.startswith("https://") and '"dpid"' in out, out
            assert sh("curl", "-sS", f"{controller.api}/sdn/switches", check=False).returncode == 60  # untrusted

            # a switch with a certificate from another CA is refused, and the refusal logged
            intruder.start()
            wait_until(lambda: re.search(r"TLS peer 127\.0\.0\.1:\d+ refused: certificate verify failed",
                                         controller.log()), 15, what="the intruder refused")
            assert not intruder.status()["connected"] and "switch dpid=0x2 up" not in controller.log()
            intruder.stop()

            # rotation: new files for both; the controller serves its new certificate to the next
            # connection, and the switch presents its new one when it reconnects -- neither restarted
            pki.issue(d, "ctl", kind="controller", force=True)
            pki.issue(d, "sw1", force=True)
            probe = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{controller.port}", "-CAfile",
                                    str(d / "ca.pem"), "-cert", str(d / "sw1.pem"), "-key", str(d / "sw1.key"),
                                    "-verify_return_error", "-showcerts"], stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=15)   # stdin closed: it ends at once
            served = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", probe.stdout, re.S)
            assert served and x509.load_pem_x509_certificate(served.group(0).encode()).serial_number \
                == serial_of(d / "ctl.pem"), probe.stdout + probe.stderr
            assert "changed; new connections use the new files" in controller.log()
            pid = switch.proc.pid
            controller.stop()                         # the switch's channel drops; it reconnects
            controller.start()
            wait_until(lambda: serial_of(d / "sw1.pem") in logged_serials(controller.log(), "sw1"), 20,
                       what="the switch reconnected with its new certificate")
            assert switch.proc.pid == pid and switch.proc.poll() is None
            wait_until(lambda: switch.status()["connected"], 15, what="connected again")
            assert ping(hosts[1][0], hosts[0][2], count=2)
        finally:
            intruder.stop()
            switch.stop()
            print(controller.log()[-3000:])


# --- Open vSwitch ----------------------------------------------------------------------------------


def vsctl(*args: str, check: bool = True) -> str:
    return sh("ovs-vsctl", "--timeout=10", *args, check=check).stdout.strip()


def saved_ssl() -> list[str] | None:
    """The ovsdb's SSL row (key, certificate, CA, bootstrap) or None."""
    rows = vsctl("--format=json", "--columns=private_key,certificate,ca_cert,bootstrap_ca_cert", "list", "ssl")
    data = json.loads(rows)["data"]
    if not data:
        return None
    key, cert, ca, bootstrap = data[0]
    return [key, cert, ca, "true" if bootstrap is True else "false"]


def restore_ssl(saved: list[str] | None) -> None:
    if saved is None:
        vsctl("del-ssl")
    else:
        key, cert, ca, bootstrap = saved
        vsctl("set-ssl", *(["--bootstrap"] if bootstrap == "true" else []), key, cert, ca)


def is_connected(bridge: str) -> bool:
    return vsctl("get", "controller", bridge, "is_connected") == "true"


@pytest.mark.root
@pytest.mark.ovs
def test_open_vswitch_over_ssl_and_refused_with_another_ca(unique_name, pkis, controller):
    d, other = pkis
    bridge = unique_name("tls")
    before = saved_ssl()
    try:
        vsctl("set-ssl", str(d / "ovs.key"), str(d / "ovs.pem"), str(d / "ca.pem"))
        vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev", "protocols=OpenFlow13",
              "fail_mode=secure", "--", "set-controller", bridge, controller.target)
        wait_until(lambda: is_connected(bridge), 20, what="Open vSwitch connected over ssl")
        assert re.search(r"verified: CN=ovs serial=", controller.log())
        assert "reconciled" in controller.log()

        # Open vSwitch with a certificate of another CA (trusting ours): the controller refuses it
        vsctl("set-ssl", str(other / "ovs.key"), str(other / "ovs.pem"), str(d / "ca.pem"))
        vsctl("set", "controller", bridge, "max_backoff=1000")
        wait_until(lambda: not is_connected(bridge) and re.search(
            r"TLS peer 127\.0\.0\.1:\d+ refused: certificate verify failed", controller.log()), 20,
            what="Open vSwitch refused by the controller")

        # Open vSwitch trusting only the other CA refuses the controller's certificate
        vsctl("set-ssl", str(other / "ovs.key"), str(other / "ovs.pem"), str(other / "ca.pem"))
        mark = len(controller.log())
        wait_until(lambda: "alert 'unknown ca' (it refused our certificate?)" in controller.log()[mark:], 20,
                   what="the controller refused by Open vSwitch")
        assert not is_connected(bridge)
    finally:
        vsctl("--if-exists", "del-br", bridge, check=False)
        restore_ssl(before)
        print(controller.log()[-3000:])
