"""Named PACS servers from a small YAML file; credentials from the environment or a file only.

Example (``~/.config/sonoseg/pacs.yaml``, or ``$SONOSEG_PACS_CONFIG``, or ``--servers FILE``)::

    calling_ae_title: SONOSEG          # our AE title (default for every server)
    servers:
      hospital:
        host: pacs.example.org
        port: 104
        ae_title: PACS                 # the server's (called) AE title
        dicomweb_url: https://pacs.example.org/dicom-web
        username: sonoseg
        password_env: PACS_PASSWORD    # or password_file: /run/secrets/pacs
        retrieve: get                  # DIMSE retrieve: get (C-GET), or move (C-MOVE to move_destination,
        # move_destination: SONOSEG    #   an AE title the PACS knows, received by a temporary SCP on move_port)
        # move_port: 11113
        # move_host: 127.0.0.1         # interface that temporary SCP binds (default loopback)
        # tls: {ca_file: ca.pem, cert_file: me.pem, key_file: me.key, verify: true}  # DICOMweb and DIMSE
        # token_env: PACS_TOKEN        # DICOMweb bearer token (or token_file:), instead of username/password

Why no password on the command line or in the YAML itself: command lines are visible to every user of
the machine (``ps``) and end up in shell history; the YAML is meant to be shared and checked in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sonoseg.errors import ConfigError
from sonoseg.pacs.tls import TlsSettings

DEFAULT_AET = "SONOSEG"
# One retry policy for both protocols: a request that cannot get through (connection refused, timeout,
# a busy server) is tried 3 times, waiting 1 s and then 2 s.
RETRY_ATTEMPTS = 3
RETRY_FIRST_WAIT_S = 1.0


def need(module: str) -> None:
    """A one-line error instead of a traceback when the optional PACS packages are missing."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{module} is not installed: pip install 'sonoseg[pacs]'") from None


def default_config_path() -> Path:
    env = os.environ.get("SONOSEG_PACS_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sonoseg" / "pacs.yaml"


@dataclass
class PacsServer:
    name: str
    host: Optional[str] = None
    port: Optional[int] = None
    ae_title: str = "ANY-SCP"
    calling_ae_title: str = DEFAULT_AET
    dicomweb_url: Optional[str] = None
    username: Optional[str] = None
    password_env: Optional[str] = None
    password_file: Optional[Path] = None
    retrieve: str = "get"  # get | move
    move_destination: Optional[str] = None  # AE title the server sends C-MOVE results to (must know it)
    move_port: Optional[int] = None  # where sonoseg receives them during a C-MOVE
    move_host: str = "127.0.0.1"  # the interface that receiver binds
    tls: Optional[TlsSettings] = None  # DICOMweb https settings and DICOM TLS (sonoseg.pacs.tls)
    token_env: Optional[str] = None  # DICOMweb bearer token from this environment variable ...
    token_file: Optional[Path] = None  # ... or the first line of this file
    timeout_s: float = 30.0
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def has_dimse(self) -> bool:
        return bool(self.host and self.port)

    @property
    def has_dicomweb(self) -> bool:
        return bool(self.dicomweb_url)

    def password(self) -> Optional[str]:
        """The password from ``password_env`` or ``password_file`` (first line); None when neither is set."""
        return self._secret(self.password_env, self.password_file, "password_file")

    def token(self) -> Optional[str]:
        """The DICOMweb bearer token from ``token_env`` or ``token_file``; None when neither is set."""
        return self._secret(self.token_env, self.token_file, "token_file")

    def _secret(self, env: Optional[str], file: Optional[Path], key: str) -> Optional[str]:
        if env:
            value = os.environ.get(env)
            if value is None:
                raise ConfigError(f"server {self.name}: environment variable {env} is not set")
            return value
        if file:
            try:
                lines = Path(file).expanduser().read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"server {self.name}: cannot read {key} {file} "
                                  f"({exc.strerror or 'unreadable'})") from None
            return lines[0] if lines else ""
        return None

    def __repr__(self) -> str:  # never shows a secret (there is none stored, but keep it that way)
        where = f"{self.host}:{self.port}" if self.has_dimse else "-"
        return f"PacsServer({self.name!r}, dimse={where}, dicomweb={self.dicomweb_url or '-'})"


_KEYS = {"host", "port", "ae_title", "calling_ae_title", "dicomweb_url", "username", "password_env",
         "password_file", "retrieve", "move_destination", "move_port", "move_host", "timeout_s", "tls", "token_env",
         "token_file"}


def _server(name: str, raw: dict, calling: str) -> PacsServer:
    if not isinstance(raw, dict):
        raise ConfigError(f"server {name}: expected a mapping of settings")
    for secret in ("password", "token"):
        if secret in raw:
            raise ConfigError(f"server {name}: put the {secret} in an environment variable ({secret}_env) "
                              f"or a file ({secret}_file), not in the server list")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"server {name}: unknown setting(s) {', '.join(sorted(unknown))}")
    s = PacsServer(name=name, calling_ae_title=str(raw.get("calling_ae_title") or calling))
    for k in _KEYS - {"calling_ae_title"}:
        if raw.get(k) is not None:
            setattr(s, k, raw[k])
    s.port, s.move_port = _port(s.port, "port", name), _port(s.move_port, "move_port", name)
    s.ae_title, s.calling_ae_title = _aet(s.ae_title, name), _aet(s.calling_ae_title, name)
    if s.move_destination is not None:
        s.move_destination = _aet(s.move_destination, name)
    for k in ("password_file", "token_file"):
        if getattr(s, k) is not None:
            setattr(s, k, Path(str(getattr(s, k))).expanduser())
    if (s.token_env or s.token_file) and (s.username or s.password_env or s.password_file):
        raise ConfigError(f"server {name}: give a bearer token (token_env / token_file) or a username and "
                          "password, not both")
    if raw.get("tls") is not None:
        s.tls = TlsSettings.parse(raw["tls"], f"server {name}")
    s.move_host = str(s.move_host)
    s.retrieve = str(s.retrieve).lower()
    if s.retrieve not in ("get", "move"):
        raise ConfigError(f"server {name}: retrieve must be get or move, not {s.retrieve}")
    if s.dicomweb_url:
        s.dicomweb_url = str(s.dicomweb_url).rstrip("/")
    if not s.has_dimse and not s.has_dicomweb:
        raise ConfigError(f"server {name}: needs host and port (DIMSE) and/or dicomweb_url")
    if s.retrieve == "move" and not (s.move_destination and s.move_port):
        raise ConfigError(f"server {name}: retrieve: move needs move_destination and move_port")
    s.timeout_s = float(s.timeout_s)
    return s


def _port(value, key: str, name: str) -> Optional[int]:
    if value is None:
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"server {name}: {key} must be a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"server {name}: {key} {port} out of range")
    return port


def _aet(value, name: str) -> str:
    v = str(value).strip()
    if not v or len(v) > 16 or "\\" in v or not v.isprintable():
        raise ConfigError(f"server {name}: AE title must be 1-16 printable characters, got {len(v)}")
    return v


def load_servers(path: Optional[str | Path] = None) -> dict[str, PacsServer]:
    import yaml

    p = Path(path) if path is not None else default_config_path()
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{p}: no PACS server list (create it, see the README's PACS section)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("servers"), dict):
        raise ConfigError(f"{p}: expected a 'servers:' mapping of named servers")
    calling = str(raw.get("calling_ae_title") or DEFAULT_AET)
    return {str(n): _server(str(n), v, calling) for n, v in raw["servers"].items()}


def server(name: str, path: Optional[str | Path] = None) -> PacsServer:
    servers = load_servers(path)
    if name not in servers:
        known = ", ".join(sorted(servers)) or "none"
        raise ConfigError(f"unknown PACS server {name!r} (configured: {known})")
    return servers[name]
