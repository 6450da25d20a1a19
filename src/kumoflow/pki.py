"""`kumoflow pki`: a small certificate authority for the controller, the switches and the API.

    kumoflow pki init DIR                       DIR/ca.key (0600) and DIR/ca.pem: a self-signed CA
    kumoflow pki cert DIR NAME [--kind controller|switch] [--san DNS-OR-IP ...] [--days N]
                                                DIR/NAME.key (0600) and DIR/NAME.pem signed by the CA

Keys are EC P-256 (ECDSA with SHA-256 signatures), which Open vSwitch 3.1 (OpenSSL 3) accepts
for `ovs-vsctl set-ssl` as well as Python's ssl module. Every certificate carries both the
serverAuth and clientAuth extended key usages, so one certificate serves a listener (a
controller, the API) and a client (a switch). A controller's certificate names, besides
NAME and each --san, localhost, 127.0.0.1 and ::1: the names a switch checks the
controller's address against (docs/tls.md).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

CA_KEY = "ca.key"
CA_CERT = "ca.pem"
CA_DAYS = 3650
CERT_DAYS = 825
KINDS = ("controller", "switch")
#: the names every controller certificate carries, so that a switch on the same machine can
#: reach it by tcp-style ssl:127.0.0.1:PORT, ssl:[::1]:PORT or ssl:localhost:PORT
CONTROLLER_DEFAULT_SANS = ("localhost", "127.0.0.1", "::1")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class PkiError(Exception):
    """What is wrong, said for the user (no CA in DIR, a bad name, a file that exists)."""


@dataclass(frozen=True)
class Issued:
    key: Path
    cert: Path


def _x509():
    # imported here: `kumoflow --help` and the commands that do not use TLS never load cryptography
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` with `mode` from the start (never readable by others in between),
    atomically: a reader (a controller rotating its certificate) sees the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)          # whatever the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _new_key():
    _, _, _, ec, _, _ = _x509()
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    _, _, serialization, _, _, _ = _x509()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def init(directory: str | Path, *, common_name: str = "kumoflow CA", days: int = CA_DAYS,
         force: bool = False) -> Issued:
    """Create the CA in `directory` (made 0700 if missing). PkiError if one is there already
    (unless `force`: a new CA invalidates every certificate the old one signed)."""
    x509, hashes, serialization, _, _, NameOID = _x509()
    if days < 1:
        raise PkiError(f"--days {days}: must be at least 1")
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path = d / CA_KEY, d / CA_CERT
    if not force and (key_path.exists() or cert_path.exists()):
        raise PkiError(f"{d} has a CA already ({CA_CERT}); --force replaces it (and every certificate "
                       f"it signed stops being trusted)")
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return Issued(key_path, cert_path)


def load_ca(directory: str | Path):
    """(key, certificate) of the CA in `directory`; PkiError says what is missing."""
    x509, _, serialization, _, _, _ = _x509()
    d = Path(directory)
    key_path, cert_path = d / CA_KEY, d / CA_CERT
    if not cert_path.exists() or not key_path.exists():
        raise PkiError(f"{d}: no CA there ({CA_KEY} and {CA_CERT}); make one with `kumoflow pki init {d}`")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{d}: the CA's files cannot be read: {exc}") from None
    return key, cert


def parse_san(text: str):
    """'10.0.0.1' -> an IP SAN, 'ctl.example' -> a DNS SAN; PkiError for anything else."""
    x509, *_ = _x509()
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?", text):
        raise PkiError(f"--san {text!r}: expected a DNS name or an IP address")
    return x509.DNSName(text.rstrip("."))


def issue(directory: str | Path, name: str, *, kind: str = "switch", sans: list[str] | tuple[str, ...] = (),
          days: int = CERT_DAYS, force: bool = False) -> Issued:
    """A key and a certificate for `name` signed by the CA in `directory`: NAME.key (0600) and
    NAME.pem. The subject's common name is NAME; the SANs are NAME when it is a DNS name or an
    address, each of `sans`, and for a controller localhost, 127.0.0.1 and ::1."""
    x509, hashes, serialization, _, EKU, NameOID = _x509()
    if kind not in KINDS:
        raise PkiError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    if not _NAME.match(name) or name in ("ca",):
        raise PkiError(f"name {name!r}: letters, digits and _.- (up to 64), not 'ca'")
    if days < 1:
        raise PkiError(f"--days {days}: must be at least 1")
    ca_key, ca_cert = load_ca(directory)
    d = Path(directory)
    key_path, cert_path = d / f"{name}.key", d / f"{name}.pem"
    if not force and (key_path.exists() or cert_path.exists()):
        raise PkiError(f"{cert_path} exists; --force issues a new key and certificate in its place")
    names: list = []
    candidates = [name, *sans, *(CONTROLLER_DEFAULT_SANS if kind == "controller" else ())]
    for i, text in enumerate(candidates):
        try:
            san = parse_san(text)
        except PkiError:
            if i == 0:           # NAME itself need not be a host name (e.g. "sw_1")
                continue
            raise
        if san not in names:
            names.append(san)
    key = _new_key()
    now = _now()
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind)]))
               .issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=False, crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([EKU.SERVER_AUTH, EKU.CLIENT_AUTH]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                              critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    # the key first: a reader that checks the certificate's mtime never pairs a new
    # certificate with the old key for long (tls.py keeps the old context until both match)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return Issued(key_path, cert_path)


# --- the command ---------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pki", help="make a CA and certificates for TLS (docs/tls.md)",
                              description="A certificate authority for TLS between the controller, the "
                                          "switches (kumoflow or Open vSwitch) and API clients. See docs/tls.md.")
    sub = p.add_subparsers(dest="pki_command", metavar="ACTION", required=True)
    i = sub.add_parser("init", help="create the CA: DIR/ca.key (0600) and DIR/ca.pem")
    i.add_argument("dir", metavar="DIR")
    i.add_argument("--days", type=int, default=CA_DAYS, help=f"validity in days (default {CA_DAYS})")
    i.add_argument("--cn", default="kumoflow CA", help="the CA's common name (default 'kumoflow CA')")
    i.add_argument("--force", action="store_true", help="replace an existing CA")
    i.set_defaults(func=_run_init)
    c = sub.add_parser("cert", help="a key and certificate signed by the CA: DIR/NAME.key (0600), DIR/NAME.pem",
                       epilog="e.g. kumoflow pki cert /etc/kumoflow/pki ctl --kind controller --san 192.0.2.10")
    c.add_argument("dir", metavar="DIR")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--kind", choices=KINDS, default="switch",
                   help="controller: also names localhost, 127.0.0.1 and ::1 (default switch)")
    c.add_argument("--san", action="append", default=[], metavar="DNS-OR-IP",
                   help="another name or address the certificate is valid for, e.g. the controller's "
                        "address that switches connect to (repeatable)")
    c.add_argument("--days", type=int, default=CERT_DAYS,
                   help=f"validity in days, at most the CA's (default {CERT_DAYS})")
    c.add_argument("--force", action="store_true", help="replace NAME's key and certificate (rotation)")
    c.set_defaults(func=_run_cert)


def _run_init(args: argparse.Namespace) -> int:
    try:
        issued = init(args.dir, common_name=args.cn, days=args.days, force=args.force)
    except (PkiError, OSError) as exc:
        print(f"kumoflow pki init: {exc}", file=_stderr())
        return 1
    print(f"CA key {issued.key} (mode 0600), certificate {issued.cert}")
    return 0


def _run_cert(args: argparse.Namespace) -> int:
    try:
        issued = issue(args.dir, args.name, kind=args.kind, sans=args.san, days=args.days, force=args.force)
    except (PkiError, OSError) as exc:
        print(f"kumoflow pki cert: {exc}", file=_stderr())
        return 1
    print(f"{args.kind} {args.name}: key {issued.key} (mode 0600), certificate {issued.cert}")
    return 0


def _stderr():
    import sys
    return sys.stderr
