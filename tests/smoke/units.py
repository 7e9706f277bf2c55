"""deploy/systemd's units, read as systemd would, to start them here as they start in
production: the same command lines, environment file and per-unit environment, the runtime
and state directories made (and owned by the service user), the user switched to.

Here the install directory /opt/mss is this checkout, /etc/mss/mss.env is the file the smoke
test writes, /run/<dir> and /var/lib/<dir> are under the test's directory, and the service
user `mss` is `nobody` when the test runs as root (as CI does), with /opt/mss/.venv a
virtualenv made for it (`service_venv`)."""

import hashlib
import os
import pwd
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
INSTALL_DIR = "/opt/mss"
ENV_FILE = "/etc/mss/mss.env"
STAND_IN_USER = "nobody"  # for `mss`, which this machine does not have


@dataclass
class Unit:
    name: str
    pre: list[list[str]]  # ExecStartPre command lines
    argv: list[str]
    env: dict[str, str]
    user: str | None  # who it runs as here; None = this process's user
    stop_timeout: float
    kill_mode: str


def read_env_file(path: Path) -> dict[str, str]:
    """systemd's EnvironmentFile: KEY=value lines, # comments, no quoting used by ours."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _sections(path: Path) -> dict[tuple[str, str], list[str]]:
    """(section, key) → its values in order (Environment= and ExecStartPre= repeat)."""
    lines: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        lines.setdefault((section, key.strip()), []).append(value.strip())
    return lines


def _command(line: str, paths: dict[str, str]) -> list[str]:
    line = line.replace("%%", "%")  # systemd's escape for a literal % (celery's %h)
    return [_local(word, paths) for word in shlex.split(line)]


def service_venv(base_dir: Path) -> Path:
    """The virtualenv the services run from: this checkout's own, or, when they run as another
    user, one made as a server's is (the system's Python, requirements.txt): a virtualenv of a
    Python under /root (pyenv) cannot start as another user."""
    if os.geteuid() != 0:
        return REPO / ".venv"
    requirements = REPO / "requirements.txt"
    stamp = hashlib.sha1(requirements.read_bytes()).hexdigest()[:12]
    venv = base_dir.parent / f"smoke-venv-{stamp}"
    if not (venv / ".installed").exists():
        shutil.rmtree(venv, ignore_errors=True)
        system_python = shutil.which("python3", path="/usr/bin:/usr/local/bin")
        subprocess.run([system_python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "-r", str(requirements)], check=True)
        (venv / ".installed").touch()
    return venv


def _local(value: str, paths: dict[str, str]) -> str:
    for production, here in sorted(paths.items(), key=lambda item: -len(item[0])):
        value = value.replace(production, here)
    return value


def load(name: str, *, env_file: Path, base_dir: Path, overrides: dict | None = None) -> Unit:
    """The unit `name` (e.g. "mss-web"), ready to run here; `overrides` replace per-unit
    environment values (free ports instead of the production ones)."""
    lines = _sections(UNITS / f"{name}.service")
    service = {key: values for (section, key), values in lines.items() if section == "Service"}
    assert service["WorkingDirectory"] == [INSTALL_DIR]
    assert service["EnvironmentFile"] == [ENV_FILE]
    paths = {INSTALL_DIR: str(REPO), f"{INSTALL_DIR}/.venv": str(service_venv(base_dir))}
    user = _user(service)
    for kind, root in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib")):
        for directory in service.get(kind, []):
            here = base_dir / kind / directory
            shutil.rmtree(here, ignore_errors=True)  # systemd empties a runtime directory
            here.mkdir(parents=True)
            if user:
                entry = pwd.getpwnam(user)
                os.chown(here, entry.pw_uid, entry.pw_gid)
            paths[f"{root}/{directory}"] = str(here)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        **read_env_file(env_file),
    }
    for line in service.get("Environment", []):
        key, _, value = line.partition("=")
        env[key] = _local(value, paths)
    env.update(overrides or {})
    env["MSS_PYTHON"] = f"{paths[INSTALL_DIR + '/.venv']}/bin/python"  # deploy/release.sh
    prefix = _switch_user(user)
    (start,) = service["ExecStart"]
    return Unit(
        name=name,
        pre=[prefix + _command(line, paths) for line in service.get("ExecStartPre", [])],
        argv=prefix + _command(start, paths),
        env=env,
        user=user,
        stop_timeout=float(service.get("TimeoutStopSec", ["90"])[0]),
        kill_mode=service.get("KillMode", ["control-group"])[0],
    )


def _user(service) -> str | None:
    wanted = service.get("User", [None])[0]
    assert wanted == "mss", "every unit runs as the service user"
    return STAND_IN_USER if os.geteuid() == 0 else None


def _switch_user(user: str | None) -> list[str]:
    if user is None:
        return []
    return ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--clear-groups"]
