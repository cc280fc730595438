"""A MariaDB server of a test's own that plays RDS: TLS required (require_secure_transport),
a certificate signed by a throwaway CA generated here, and an application user with a
password. Started from /usr/sbin/mariadbd on a free port with its own datadir."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"


def _key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def make_ca(name: str):
    """(key, certificate) of a self-signed CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(ca_key, ca_cert, host: str = "127.0.0.1"):
    """(key, certificate) for ``host`` (an IP address SAN), signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pem(path: Path, cert) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass
class TlsMariaDB:
    host: str
    port: int
    ca_bundle: Path  # the CA that signed the server's certificate
    other_ca_bundle: Path  # a CA that did not
    socket: Path
    user: str = "churn_app"
    password: str = "S3cret-Pa55-never-logged-7f3a9c"

    def url(self, database: str, ca_bundle: Path | None = None) -> str:
        """An SQLAlchemy URL over TCP, with the CA bundle (the test's CA by default)."""
        import sqlalchemy as sa

        return sa.URL.create(
            "mysql+pymysql",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database,
            query={"ssl_ca": str(ca_bundle or self.ca_bundle)},
        ).render_as_string(hide_password=False)

    def admin(self, sql: str) -> None:
        """Run statements as root over the server's Unix socket (exempt from TLS)."""
        import pymysql

        conn = pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)
        try:
            with conn.cursor() as cursor:
                for statement in filter(None, (s.strip() for s in sql.split(";"))):
                    cursor.execute(statement)
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """A database the application user holds the jobs' grants on, and no more."""
        from churn_kedro.database import APP_GRANTS

        self.admin(
            f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4;"
            f"GRANT {APP_GRANTS} ON `{name}`.* TO '{self.user}'@'%'"
        )
        return name


def start(folder: Path, port: int) -> tuple[TlsMariaDB, subprocess.Popen]:
    """Initialise a datadir under ``folder`` and start mariadbd on ``port`` with TLS
    required; returns the server's description and its process (the caller stops it)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca("churn test CA")
    server_key, server_cert = make_server_cert(ca_key, ca_cert)
    _, other_cert = make_ca("churn unrelated CA")
    ca = write_pem(folder / "ca.pem", ca_cert)
    other = write_pem(folder / "other-ca.pem", other_cert)
    write_pem(folder / "server-cert.pem", server_cert)
    (folder / "server-key.pem").write_bytes(_pem_key(server_key))
    datadir, socket = folder / "data", folder / "mysqld.sock"
    subprocess.run(
        [
            INSTALL_DB,
            "--no-defaults",
            f"--datadir={datadir}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    process = subprocess.Popen(
        [
            MARIADBD,
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={socket}",
            f"--pid-file={folder / 'mysqld.pid'}",
            f"--log-error={folder / 'error.log'}",
            "--bind-address=127.0.0.1",
            f"--port={port}",
            "--user=root",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            "--local-infile=1",
            f"--ssl-ca={ca}",
            f"--ssl-cert={folder / 'server-cert.pem'}",
            f"--ssl-key={folder / 'server-key.pem'}",
            "--require-secure-transport=ON",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = TlsMariaDB("127.0.0.1", port, ca, other, socket)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.admin("SELECT 1")
            break
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log = (folder / "error.log").read_text() if (folder / "error.log").exists() else ""
                raise RuntimeError(f"mariadbd did not start: {log[-2000:]}") from None
            time.sleep(0.2)
    server.admin(f"CREATE USER '{server.user}'@'%' IDENTIFIED BY '{server.password}'")
    return server, process
