"""A private PostgreSQL server for the tests: its own data folder, a free loopback port.

:class:`PostgresServer` runs Debian's PostgreSQL binaries (15 on Debian 12, 17 on Debian 13) (``initdb``,
``pg_ctl``) on a fresh data folder with trust authentication on 127.0.0.1
only, so nothing of the machine's own clusters is touched. PostgreSQL refuses
to run as root: as root the server runs as the ``postgres`` user (``runuser``),
otherwise as the current user. :func:`missing_postgres` says what is missing;
the fixtures turn that into a failure, not a skip (``make test`` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def _pg_bin() -> Path:
    """``$SCINTISEG_PG_BIN``, else the newest Debian PostgreSQL (15 on Debian 12, 17 on 13)."""
    if os.environ.get("SCINTISEG_PG_BIN"):
        return Path(os.environ["SCINTISEG_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PG_USER = "postgres"
DATABASE = "orthanc"


def missing_postgres() -> str | None:
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not os.access(PG_BIN / tool, os.X_OK):
            return f"PostgreSQL server binaries missing ({PG_BIN / tool}); run 'make setup' (postgresql-15)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed in the venv (make setup)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser is needed to run PostgreSQL as the postgres user"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """``start`` creates and starts the server; ``stop`` stops it and removes its folder."""

    port: int = 0
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="scintiseg-pg-")))
    user: str = ""

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def uri(self, database: str = DATABASE) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def start(self) -> None:
        self.port = self.port or _free_port()
        self.user = PG_USER if self.as_root else (os.environ.get("USER") or "postgres")
        if self.as_root:
            shutil.chown(self.folder, PG_USER, PG_USER)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"),
                  "-w", "-t", "60", "start")
        self.create_database(DATABASE)

    def create_database(self, name: str) -> str:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.uri("postgres"), autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')  # a test-chosen name, never user input
                return self.uri(name)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
            except AssertionError:
                pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)
