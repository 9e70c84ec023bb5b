"""A throw-away PKI for TLS tests, made with the `openssl` command line (the `cryptography` package is absent).

`make_pki(folder)` writes a CA, a server certificate for 127.0.0.1 and localhost (IP and DNS SANs), a
client certificate, all signed by that CA, and a second CA that signed none of them; EC P-256 keys,
valid for two days. `mosquitto_password_file` writes a password file with `mosquitto_passwd`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate: the ca_file of clients and the cafile of servers
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting only it must fail
    encrypted_key: Path  # the client key under the passphrase "secret"


def tools_missing() -> list[str]:
    """The command-line tools these tests need that are not installed."""
    return [t for t in ("openssl", "mosquitto_passwd") if _which(t) is None]


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca(folder, "ca", "ParkWatch test CA")
    other_ca, _ = _ca(folder, "other-ca", "Some other CA")
    server_cert, server_key = _leaf(folder, "server", cn="127.0.0.1", ca=ca, ca_key=ca_key,
                                    extensions="subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    client_cert, client_key = _leaf(folder, "client", cn="parkwatch-client", ca=ca, ca_key=ca_key,
                                    extensions="extendedKeyUsage=clientAuth")
    encrypted = folder / "client-encrypted.key"
    _openssl("pkey", "-in", str(client_key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted))
    return Pki(ca, server_cert, server_key, client_cert, client_key, other_ca, encrypted)


def mosquitto_password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file holding `users` (name -> password), hashed by mosquitto_passwd."""
    binary = _which("mosquitto_passwd")
    if binary is None:
        raise RuntimeError("mosquitto_passwd is not installed (Debian package mosquitto)")
    for i, (user, password) in enumerate(users.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run([binary, "-b", *create, str(path), user, password], check=True, capture_output=True)
    return path


def _ca(folder: Path, name: str, subject: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", *_EC, "-keyout", str(key), "-out", str(cert), "-days", DAYS, "-subj", f"/CN={subject}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def _leaf(folder: Path, name: str, *, cn: str, ca: Path, ca_key: Path, extensions: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (folder / f"{name}{s}" for s in (".pem", ".key", ".csr", ".ext"))
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   f"authorityKeyIdentifier=keyid\n{extensions}\n")
    _openssl("req", "-new", *_EC, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(cert), "-days", DAYS, "-extfile", str(ext))
    return cert, key


def _openssl(*args: str) -> None:
    binary = _which("openssl")
    if binary is None:
        raise RuntimeError("openssl is not installed (Debian package openssl)")
    result = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
