"""TLS contexts for the OpenFlow channels, re-read when their files change.

`TlsFiles(key, cert, ca)` names a private key, its certificate and the CA certificate
that peers' certificates must be signed by. `TlsContexts(files, server_side)` builds the
`ssl.SSLContext` for them and, each time `context()` is asked (at every accept on the
controller, every connection attempt of a switch), checks the files' modification times,
sizes and inodes: when one changed it builds a new context, so a rotated certificate is
used by the next connection without a restart, while established connections keep theirs.
A new set of files that does not load (a key that does not match its certificate while
they are being replaced, a missing file) is logged once and the previous context goes on
being used until the files load again.

Both sides: TLS 1.2 or later, the peer's certificate required and verified against the CA.
The client side (a switch) also checks the controller's name: the host of its
`ssl:HOST:PORT` target must be one of the certificate's DNS names or, for an address, one
of its IP addresses (Python's ssl, RFC 6125 rules).
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("kumoflow.tls")

#: seconds a TLS handshake may take before the connection is dropped
HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True)
class TlsFiles:
    key: Path
    cert: Path
    ca: Path

    @classmethod
    def of(cls, key: str | os.PathLike, cert: str | os.PathLike, ca: str | os.PathLike) -> "TlsFiles":
        return cls(Path(key), Path(cert), Path(ca))

    def check(self) -> None:
        """ValueError naming the first file that cannot be read."""
        for what, path in (("--tls-key", self.key), ("--tls-cert", self.cert), ("--tls-ca", self.ca)):
            if not os.access(path, os.R_OK):
                raise ValueError(f"{what} {path}: " + ("cannot be read" if path.exists() else "no such file"))


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A listener's context: our certificate, clients must present one signed by the CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(files.ca))
    ctx.load_cert_chain(certfile=str(files.cert), keyfile=str(files.key))
    return ctx


def client_context(files: TlsFiles, check_hostname: bool = True) -> ssl.SSLContext:
    """A connecting side's context: the server's certificate verified against the CA (and its
    name against the target's host unless `check_hostname` is false); ours presented."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(files.ca))
    ctx.load_cert_chain(certfile=str(files.cert), keyfile=str(files.key))
    return ctx


def _stamp(files: TlsFiles) -> tuple:
    out = []
    for path in (files.key, files.cert, files.ca):
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class TlsContexts:
    """The current context for `files`, rebuilt when they change (see the module's docstring)."""

    def __init__(self, files: TlsFiles, *, server_side: bool, check_hostname: bool = True) -> None:
        self.files = files
        self.server_side = server_side
        self.check_hostname = check_hostname
        self._ctx: ssl.SSLContext | None = None
        self._stamp: tuple | None = None
        self._failed: tuple | None = None
        #: how many times the files were loaded (1 at start; +1 per rotation seen)
        self.loads = 0

    def _build(self) -> ssl.SSLContext:
        if self.server_side:
            return server_context(self.files)
        return client_context(self.files, self.check_hostname)

    def context(self) -> ssl.SSLContext:
        """The context to use for a new connection. Raises (OSError, ssl.SSLError) only when
        the files have never loaded."""
        stamp = _stamp(self.files)
        if self._ctx is not None and stamp == self._stamp:
            return self._ctx
        if self._ctx is not None and stamp == self._failed:
            return self._ctx
        try:
            ctx = self._build()
        except (OSError, ssl.SSLError, ValueError) as exc:
            if self._ctx is None:
                raise
            if stamp != self._failed:
                log.error("TLS: %s, %s, %s changed but do not load (%s); keeping the previous certificate",
                          self.files.key, self.files.cert, self.files.ca, exc)
            self._failed = stamp
            return self._ctx
        if self._ctx is not None:
            log.info("TLS: %s changed; new connections use the new files", self.files.cert)
        self._ctx, self._stamp, self._failed = ctx, stamp, None
        self.loads += 1
        return ctx


def describe_peer(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """'CN=sw1 serial=5F3A... (TLSv1.3)' for the log: who the verified peer says it is, and which
    of its certificates (the serial tells a rotated certificate from the one before)."""
    if ssl_object is None:
        return "?"
    cert = ssl_object.getpeercert() or {}
    cn = next((v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"), "?")
    return f"CN={cn} serial={cert.get('serialNumber', '?')} ({ssl_object.version()})"


def refusal_reason(exc: BaseException) -> str:
    """A short reason for a failed handshake, e.g. 'certificate verify failed: unable to get
    local issuer certificate' or 'peer did not return a certificate'."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc.strerror or exc)
        if "ALERT_" in reason:                     # the peer's own verdict, e.g. TLSV1_ALERT_UNKNOWN_CA
            alert = reason.split("ALERT_", 1)[1].replace("_", " ").lower()
            return f"the peer ended the handshake with alert '{alert}' (it refused our certificate?)"
        return reason.replace("_", " ").lower()
    if isinstance(exc, TimeoutError):
        return "handshake timed out"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError)):
        return "the peer closed the connection during the handshake (did it refuse our certificate?)"
    return str(exc) or type(exc).__name__


def from_args(args: Any, targets: list[str], option: str, *, server_side: bool) -> "TlsContexts | None":
    """kumoflow.tls.TlsContexts for --tls-key/--tls-cert/--tls-ca, or None when no target is ssl:
    (ValueError when one is and a file is missing, or the files are given with no ssl: target).
    `kumoflow controller` (server side) and `kumoflow switch` (client side) share it."""
    from kumoflow.ofp.address import parse_address

    given = [f for f in (args.tls_key, args.tls_cert, args.tls_ca) if f]
    ssl_targets = [t for t in targets if parse_address(t, default_host="127.0.0.1").scheme == "ssl"]
    if not ssl_targets:
        if given:
            raise ValueError(f"--tls-key/--tls-cert/--tls-ca: only with {option} ssl:HOST:PORT")
        return None
    if len(given) != 3:
        raise ValueError(f"{option} {ssl_targets[0]}: needs --tls-key, --tls-cert and --tls-ca")
    files = TlsFiles.of(args.tls_key, args.tls_cert, args.tls_ca)
    files.check()
    tls = TlsContexts(files, server_side=server_side)
    try:
        tls.context()
    except (OSError, ValueError) as exc:          # ssl.SSLError is an OSError
        raise ValueError(f"--tls-key {files.key} / --tls-cert {files.cert} / --tls-ca {files.ca}: {exc}") from None
    return tls


__all__ = ["HANDSHAKE_TIMEOUT", "TlsContexts", "TlsFiles", "client_context", "describe_peer", "from_args",
           "refusal_reason", "server_context"]
