"""Test certificates, made at test time with the `openssl` command.

A private CA signs a server certificate for localhost / 127.0.0.1 / ::1, a
client certificate, an expired server certificate and one for another host;
a second CA (never trusted) signs one more localhost certificate (an unknown
issuer). The server key also exists encrypted with PASSWORD. Nothing here is
committed: every run makes fresh files in a temporary directory (EC P-256 keys,
a few tens of milliseconds each).

Use: ``kit = make_kit(tmp_dir)`` or the session fixture ``tlskit`` from
tests/conftest.py. Tests import this module as ``tlskit`` (tests/ is on sys.path).
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "wsuv-test-password"
CLIENT_CN = "wsuv-test-client"


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TLSKit:
    """Paths of every file the kit made."""

    dir: Path
    ca: Pair                # trusted by the tests
    server: Pair            # localhost, 127.0.0.1, ::1; signed by ca
    server_key_encrypted: Path  # server.key under PASSWORD
    client: Pair            # CN=wsuv-test-client, clientAuth; signed by ca
    expired: Pair           # localhost, expired in 2021; signed by ca
    wrong_host: Pair        # wrong.example only; signed by ca
    unknown_ca: Pair        # a CA nobody trusts
    untrusted: Pair         # localhost, signed by unknown_ca
    other_client: Pair      # a client certificate signed by unknown_ca

    def client_context(self, *, cert: Pair | None = None) -> ssl.SSLContext:
        """A Python client context trusting the kit's CA (optionally with a client cert)."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert), str(cert.key))
        return ctx


def _run(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _key(path: Path, cwd: Path) -> None:
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path), cwd=cwd)


def _ca(d: Path, name: str) -> Pair:
    pair = Pair(d / f"{name}.pem", d / f"{name}.key")
    _key(pair.key, d)
    _run("req", "-x509", "-new", "-key", str(pair.key), "-out", str(pair.cert),
         "-days", "30", "-subj", f"/CN=wsuv test {name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return pair


_CA_CONF = """\
[ca]
default_ca = kit
[kit]
dir = {dir}
database = {dir}/index-{name}.txt
new_certs_dir = {dir}
serial = {dir}/serial-{name}
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
"""


def _leaf(d: Path, name: str, issuer: Pair, cn: str, ext: str, *,
          dates: tuple[str, str] | None = None) -> Pair:
    """A certificate signed by issuer: `openssl ca` (it takes explicit dates)."""
    pair = Pair(d / f"{name}.pem", d / f"{name}.key")
    _key(pair.key, d)
    csr = d / f"{name}.csr"
    _run("req", "-new", "-key", str(pair.key), "-out", str(csr), "-subj", f"/CN={cn}", cwd=d)
    (d / f"index-{name}.txt").write_text("")
    (d / f"serial-{name}").write_text(hashlib.sha1(name.encode()).hexdigest()[:16] + "\n")
    conf = d / f"ca-{name}.cnf"
    conf.write_text(_CA_CONF.format(dir=d, name=name))
    extfile = d / f"{name}.ext"
    extfile.write_text(f"[v3]\n{ext}\n")
    when = (["-startdate", dates[0], "-enddate", dates[1]] if dates else ["-days", "30"])
    _run("ca", "-batch", "-notext", "-config", str(conf), "-cert", str(issuer.cert),
         "-keyfile", str(issuer.key), "-in", str(csr), "-out", str(pair.cert),
         "-extfile", str(extfile), "-extensions", "v3", *when, cwd=d)
    return pair


SERVER_EXT = ("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
              "extendedKeyUsage=serverAuth\n"
              "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1")
CLIENT_EXT = ("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
              "extendedKeyUsage=clientAuth")


def make_kit(d: Path) -> TLSKit:
    """Makes every file in directory d (created if needed)."""
    d.mkdir(parents=True, exist_ok=True)
    ca = _ca(d, "ca")
    server = _leaf(d, "server", ca, "localhost", SERVER_EXT)
    encrypted = d / "server-encrypted.key"
    _run("pkey", "-in", str(server.key), "-out", str(encrypted), "-aes256",
         "-passout", f"pass:{PASSWORD}", cwd=d)
    client = _leaf(d, "client", ca, CLIENT_CN, CLIENT_EXT)
    expired = _leaf(d, "expired", ca, "localhost", SERVER_EXT,
                    dates=("20200101000000Z", "20210101000000Z"))
    wrong = _leaf(d, "wrong", ca, "wrong.example",
                  SERVER_EXT.replace("DNS:localhost,IP:127.0.0.1,IP:::1",
                                     "DNS:wrong.example"))
    unknown = _ca(d, "unknown-ca")
    untrusted = _leaf(d, "untrusted", unknown, "localhost", SERVER_EXT)
    other_client = _leaf(d, "other-client", unknown, CLIENT_CN, CLIENT_EXT)
    return TLSKit(d, ca, server, encrypted, client, expired, wrong, unknown, untrusted,
                  other_client)


def spki_sha256(cert: Path) -> str:
    """base64 SHA-256 of a certificate's public key (Chromium's
    --ignore-certificate-errors-spki-list takes these)."""
    pem = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
                         capture_output=True, check=True, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem,
                         capture_output=True, check=True, timeout=30).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()
