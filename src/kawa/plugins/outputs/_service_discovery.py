"""out_forward's servers: `<server>` sections and Fluentd's `<service_discovery>` plugins `static`
(`<service>` sections) and `file` (a YAML or JSON list of servers, read again when it changes, as
sd_file's stat watcher does). `srv` (DNS SRV records) is refused at start: Python's standard library
has no SRV lookup.

    <service_discovery>
      @type file
      path /etc/fluent/sd.yaml      # - host: 10.0.0.5
    </service_discovery>            #   port: 24224
"""

from __future__ import annotations

import json
import os
from typing import Any

from kawa.config.schema import Options, option, section
from kawa.errors import ConfigError

LISTEN_PORT = 24224
DEFAULT_WEIGHT = 60
DEFAULT_SD_FILE_PATH = os.environ.get("DEFAULT_SD_FILE_PATH", "/etc/fluent/sd.yaml")
FILE_POLL_INTERVAL = 5.0     # seconds between two looks at the file (its size, time and inode)


class ServerSection(Options):
    host = option(doc="The IP address or host name of the server.")
    name = option(None, doc="The name of the server (log lines; the TLS name when host is an address).")
    port = option(LISTEN_PORT, "integer", doc="The port of the server.")
    shared_key = option(None, secret=True, doc="Shared key of this server (default: <security>'s).")
    username = option("", doc="The username for authentication.")
    password = option("", secret=True, doc="The password for authentication.")
    standby = option(False, "bool", doc="Used only while no other server is up.")
    weight = option(DEFAULT_WEIGHT, "integer", doc="Load-balancing weight.")


class DiscoveryOptions(Options):
    """`<service_discovery>`: @type static (with <service> sections) or file."""

    path = option(DEFAULT_SD_FILE_PATH, doc="file: the YAML (.yaml/.yml, the default) or JSON (.json) list of servers.")
    conf_encoding = option("utf-8", doc="file: the file's encoding.")
    services = section(ServerSection, multi=True, aliases=("service",), doc="static: the servers.")
    # sd_srv's options, declared so that such a section gets its own error (srv is refused)
    service = option(None, doc="srv: the service name (refused).")
    proto = option("tcp", doc="srv: the protocol (refused).")
    hostname = option(None, doc="srv: the domain (refused).")
    dns_server_host = option(None, doc="srv: the DNS server (refused).")
    interval = option(60.0, "time", doc="srv: the lookup interval (refused).")
    dns_lookup = option(True, "bool", doc="srv: resolve the targets (refused).")


def server_key(s: ServerSection) -> tuple[Any, ...]:
    """What makes two descriptions the same server (a change of any part replaces it)."""
    return (s.host, s.port, s.name, s.weight, s.standby, s.username, s.password, s.shared_key)


def kind_of(sd: DiscoveryOptions) -> str:
    element = sd._element
    attr = element.attrs.get("@type") if element is not None else None
    return attr.value if attr is not None else "static"


def initial_servers(sd: DiscoveryOptions) -> list[ServerSection]:
    """The servers at start; ConfigError as Fluentd's sd plugins."""
    kind = kind_of(sd)
    if kind == "static":
        return list(sd.services)
    if kind == "file":
        if not os.path.exists(sd.path):
            raise ConfigError(f"sd_file: path={sd.path} not found")
        return read_file(sd.path, sd.conf_encoding)
    if kind == "srv":
        raise ConfigError("<service_discovery> @type srv (DNS SRV records) is not supported by kawa: list the "
                          "servers in <server> sections or in a @type file list")
    raise ConfigError(f"Unknown sd plugin '{kind}'")


def read_file(path: str, encoding: str = "utf-8") -> list[ServerSection]:
    """sd_file's fetch_server_info: a list of {host, port, name, weight, standby, username, password,
    shared_key}; host and port required."""
    try:
        with open(path, encoding=encoding) as f:
            text = f.read()
    except (OSError, LookupError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sd_file: path={path} couldn't open {exc}") from None
    if path.rsplit("/", 1)[-1].split(".", 1)[-1] == "json":
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"sd_file: path={path}: {exc}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"sd_file: path={path}: reading YAML needs PyYAML (pip install pyyaml); "
                              "or write the list as JSON in a .json file") from None
        try:
            items = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"sd_file: path={path}: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"sd_file: path={path}: expected a list of servers (host, port, ...)")
    servers = []
    for item in items:
        for required in ("host", "port"):
            if required not in item:
                raise ConfigError(f'key not found: "{required}". Service must have `host` and `port`')
        server = ServerSection.defaults()
        server.host = str(item["host"])
        try:
            server.port = int(item["port"])
            server.weight = int(item.get("weight", DEFAULT_WEIGHT))
        except (TypeError, ValueError):
            raise ConfigError(f"sd_file: path={path}: port and weight must be integers: {item}") from None
        server.name = item.get("name")
        server.standby = bool(item.get("standby") or False)
        server.username = item.get("username") or ""
        server.password = item.get("password") or ""
        server.shared_key = item.get("shared_key")
        servers.append(server)
    return servers


class FileWatch:
    """Notices a change of the file (size, mtime, inode) and reads it again."""

    def __init__(self, path: str, encoding: str) -> None:
        self.path = path
        self.encoding = encoding
        self._seen = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ino

    def changed(self) -> list[ServerSection] | None:
        """The new list when the file changed since the last look, else None; ConfigError when it
        cannot be read (the caller keeps its servers, as sd_file does)."""
        now = self._stat()
        if now == self._seen or now is None:
            return None
        self._seen = now
        return read_file(self.path, self.encoding)
