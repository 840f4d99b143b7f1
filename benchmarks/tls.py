"""A throw-away loopback PKI for the ``wss://`` runs (cryptofeed accepts only
``wss://`` addresses): a CA and a certificate for ``127.0.0.1``/``localhost``
signed by it, made at run time with the ``openssl`` CLI (or the
``cryptography`` package when there is no ``openssl``). Clients trust the CA
through the standard environment variables, so no client code is changed and
certificate verification stays on:

* ``SSL_CERT_FILE`` — Python's ``ssl.create_default_context()`` (trio-books,
  websockets, aiohttp);
* ``REQUESTS_CA_BUNDLE`` — ``requests`` (cryptofeed's start-up symbol query).
"""

from __future__ import annotations

import os
import shutil
import subprocess


class TLSUnavailable(Exception):
    pass


def make_certs(directory: str) -> dict[str, str]:
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` into ``directory``."""
    paths = {"ca": os.path.join(directory, "ca.pem"), "cert": os.path.join(directory, "server.pem"),
             "key": os.path.join(directory, "server.key")}
    if shutil.which("openssl"):
        _with_openssl(directory, paths)
    else:
        _with_cryptography(paths)
    return paths


def setup(workdir: str, clients: list, notes: list[str]) -> tuple[dict[str, str] | None, list, dict[str, str]]:
    """Certificates for the wss:// runs, or a note and no wss:// clients when none can be
    made. Returns ``(certs or None, the clients that can run, the clients' environment)``."""
    certs = None
    try:
        certs = make_certs(workdir)
    except TLSUnavailable as exc:
        notes.append(f"wss:// runs skipped: cannot make a certificate ({exc}).")
        clients = [c for c in clients if c.scheme != "wss"]
    env = dict(os.environ)
    if certs:
        env.update(client_env(certs["ca"]))
    return certs, clients, env


def client_env(ca_path: str) -> dict[str, str]:
    return {"SSL_CERT_FILE": ca_path, "REQUESTS_CA_BUNDLE": ca_path}


def _run(*args: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise TLSUnavailable(f"{' '.join(args[:3])}…: {proc.stderr.strip()[-300:]}")


def _with_openssl(d: str, paths: dict[str, str]) -> None:
    ca_key = os.path.join(d, "ca.key")
    csr = os.path.join(d, "server.csr")
    ext = os.path.join(d, "server.ext")
    with open(ext, "w") as fh:
        fh.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                 "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _run("openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", paths["ca"], "-days", "2",
         "-subj", "/CN=trio-books benchmark CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _run("openssl", "req", *ec, "-keyout", paths["key"], "-out", csr, "-subj", "/CN=127.0.0.1")
    _run("openssl", "x509", "-req", "-in", csr, "-CA", paths["ca"], "-CAkey", ca_key, "-CAcreateserial",
         "-out", paths["cert"], "-days", "2", "-extfile", ext)


def _with_cryptography(paths: dict[str, str]) -> None:
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise TLSUnavailable("neither the openssl CLI nor the cryptography package is available") from None
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trio-books benchmark CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(paths["ca"], "wb") as fh:
        fh.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["cert"], "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["key"], "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
