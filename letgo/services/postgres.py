"""A real PostgreSQL server in a project folder (``initdb`` + ``pg_ctl``), on 127.0.0.1 and a free port.

PostgreSQL refuses to run as root; when we are root (CI, fresh machines) the cluster is owned by and run
as the ``postgres`` system user that Debian's package creates. ``make`` installs the package when
``initdb`` is missing (see ``scripts/ensure-postgres``).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType

from letgo.services import free_port

SUPERUSER = "letgo"


def find_bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: install PostgreSQL (make deps does: apt-get install postgresql)")
    return found


class PostgresServer:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self.data = self.directory / "data"
        self.port = free_port()
        self.run_as = "postgres" if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.run_as:
            command = ["setpriv", f"--reuid={self.run_as}", f"--regid={self.run_as}", "--init-groups", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if done.returncode:
            raise RuntimeError(f"{' '.join(args[:1])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return done

    def start(self) -> "PostgresServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            for path in (self.directory, *self.directory.parents):
                if path == Path("/"):
                    break
                os.chmod(path, os.stat(path).st_mode | 0o001)  # let postgres traverse to its folder
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._run(find_bin("initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                      "--encoding=UTF8", "--locale=C.UTF-8")
        # fsync off: written to the OS, not forced to disk — a PostgreSQL crash (pg_ctl stop -m immediate, the
        # chaos suite) loses nothing, a machine crash could. synchronous_commit stays on: a commit the client
        # was told about must survive a PostgreSQL crash, or "delivered" would not mean delivered.
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.directory} "
                   f"-c fsync=off -c full_page_writes=off -c max_connections=50")
        self._run(find_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")
        return self

    def running(self) -> bool:
        try:
            os.kill(int((self.data / "postmaster.pid").read_text().split()[0]), 0)
        except (OSError, ValueError, IndexError):
            return False
        return True

    def stop(self, mode: str = "fast") -> None:
        """``fast``: roll back sessions and shut down cleanly; ``immediate``: abort, as a crash would (the next
        start recovers from the WAL)."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            self._run(find_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
        except RuntimeError:
            # pg_ctl could not do it (e.g. it lost access to the folder): stop the postmaster by its pid
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                pass

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()
