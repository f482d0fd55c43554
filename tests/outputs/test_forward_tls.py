"""forward output -> forward input over TLS on real sockets: `<transport tls>` and `transport tls` with
Fluentd's option names; the server's name checked when the host is a name; client certificates;
a plain-TCP sender refused with Fluentd's warning; configuration errors with their reasons."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kawa.errors import ConfigError
from kawa.testing.drivers import InputDriver, OutputDriver
from kawa.testing.tls import plain_tcp_client, write_self_signed

T = 1_700_000_000 * 1_000_000_000


@pytest.fixture()
def certs(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.pem" for name in
             ("server", "server_key", "client", "client_key", "other", "other_key")}
    write_self_signed(paths["server"], paths["server_key"], ("127.0.0.1", "localhost"), passphrase="pass")
    write_self_signed(paths["client"], paths["client_key"], ("sidecar",))
    write_self_signed(paths["other"], paths["other_key"], ("other.example",))
    return paths


def server_conf(certs: dict[str, Path], extra: str = "", cert: str = "server") -> str:
    key = "\nprivate_key_passphrase pass" if cert == "server" else ""
    return (f"bind 127.0.0.1\nport 0\n<transport tls>\ncert_path {certs[cert]}\n"
            f"private_key_path {certs[cert + '_key']}{key}\n{extra}</transport>\n")


def send(server_text: str, client_text: Any, *, expect: int = 2) -> tuple[InputDriver, OutputDriver]:
    """Two events through a client built by `client_text(port)`; waits for `expect` of them."""
    server = InputDriver("forward", server_text)
    holder: dict[str, OutputDriver] = {}

    async def go() -> None:
        async with server.run():
            client = OutputDriver("forward", client_text(server.instance.port))
            holder["client"] = client
            async with client.run():
                await client.feed_batch("app", [(T, {"n": 1}), (T + 1, {"n": 2})])
                try:
                    await client.flush()
                except Exception:           # a refused handshake: the chunk stays for a retry
                    pass
                if expect:
                    await server.wait_for(lambda: len(server.events) == expect, 10)
                else:
                    await asyncio.sleep(0.5)

    asyncio.run(go())
    return server, holder["client"]


def client_conf(port: int, host: str = "127.0.0.1", extra: str = "", name: str | None = None) -> str:
    named = f"name {name}\n" if name else ""
    return (f"transport tls\nrequire_ack_response true\n{extra}\n"
            f"<server>\nhost {host}\nport {port}\n{named}</server>\n<buffer>\nretry_wait 30s\n</buffer>\n")


def test_events_arrive_over_tls_with_acks(certs: dict[str, Path]) -> None:
    server, client = send(server_conf(certs), lambda port: client_conf(port, extra=f"tls_cert_path {certs['server']}"))
    assert sorted(r["n"] for _tag, _t, r in server.events) == [1, 2]
    assert client.instance.stats()["acks"] == 1


def test_the_servers_name_is_checked_when_the_host_is_a_name(certs: dict[str, Path]) -> None:
    trusted = f"tls_cert_path {certs['other']}"
    # "other.example"'s certificate served on localhost: refused by name, accepted without the check
    _server, client = send(server_conf(certs, cert="other"),
                           lambda port: client_conf(port, "localhost", trusted), expect=0)
    assert client.instance.stats()["acks"] == 0
    assert any("certificate" in line and "localhost" in line for line in client.logs), client.logs
    send(server_conf(certs, cert="other"),
         lambda port: client_conf(port, "localhost", trusted + "\ntls_verify_hostname false"))
    # by IP address the name is not checked (Fluentd's socket helper), the chain still is
    send(server_conf(certs, cert="other"), lambda port: client_conf(port, "127.0.0.1", trusted))
    # ... unless the <server> has a `name`: then that name is checked (and sent as SNI)
    send(server_conf(certs, cert="other"), lambda port: client_conf(port, "127.0.0.1", trusted, "other.example"))
    _server, client = send(server_conf(certs, cert="other"),
                           lambda port: client_conf(port, "127.0.0.1", trusted, "wrong.example"), expect=0)
    assert any("wrong.example" in line for line in client.logs), client.logs
    send(server_conf(certs), lambda port: client_conf(port, "localhost", f"tls_cert_path {certs['server']}"))


def test_an_untrusted_server_is_refused_unless_insecure(certs: dict[str, Path]) -> None:
    _server, client = send(server_conf(certs), lambda port: client_conf(port), expect=0)
    assert any("certificate verify failed" in line for line in client.logs), client.logs
    _server, client = send(server_conf(certs), lambda port: client_conf(port, extra="tls_insecure_mode true"))
    assert any("TLS transport is configured in insecure way" in line for line in client.logs)


def test_client_cert_auth_wants_a_certificate_from_ca_path(certs: dict[str, Path]) -> None:
    auth = f"client_cert_auth true\nca_path {certs['client']}\n"
    trusted = f"tls_cert_path {certs['server']}"
    server, _client = send(server_conf(certs, auth), lambda port: client_conf(port, extra=trusted), expect=0)
    assert server.events == []
    assert any("unexpected error before accepting TLS connection by OpenSSL" in line for line in server.logs)
    with_cert = (f"{trusted}\ntls_client_cert_path {certs['client']}\n"
                 f"tls_client_private_key_path {certs['client_key']}")
    send(server_conf(certs, auth), lambda port: client_conf(port, extra=with_cert))


def test_a_plain_tcp_sender_gets_a_warning_and_the_listener_keeps_serving(certs: dict[str, Path]) -> None:
    server = InputDriver("forward", server_conf(certs))

    async def go() -> None:
        async with server.run():
            port = server.instance.port
            await asyncio.get_running_loop().run_in_executor(None, plain_tcp_client, port,
                                                             b'["app", 1700000000, {"plain": true}]')
            await server.wait_for(lambda: any("before accepting TLS" in line for line in server.logs), 10)
            client = OutputDriver("forward", client_conf(port, extra=f"tls_cert_path {certs['server']}"))
            async with client.run():
                await client.feed("app", T, {"n": 1})
                await client.flush()
                await server.wait_for(lambda: len(server.events) == 1, 10)

    asyncio.run(go())
    assert server.events[0][2] == {"n": 1}
    assert server.instance.stats()["tls_handshake_failures"] == 1


@pytest.mark.parametrize("transport, message", [
    ("cert_path {server}", "private_key_path is required when cert_path is specified"),
    ("", "no valid cert options configured. specify either 'cert_path', 'ca_cert_path' or 'insecure'"),
    ("insecure true", "insecure: Fluentd generates a server certificate here; kawa does not"),
    ("cert_path {server}\nprivate_key_path {server_key}\nprivate_key_passphrase wrong", "cannot load the server certificate"),
    ("cert_path {server}\nprivate_key_path {server_key}\nprivate_key_passphrase pass\nmin_version TLS1_2",
     "When you set min_version, must set max_version together"),
    ("cert_path {server}\nprivate_key_path {server_key}\nprivate_key_passphrase pass\ncert_verifier x.rb",
     "cert_verifier: a Ruby verifier cannot run in kawa"),
])
def test_server_configuration_errors(certs: dict[str, Path], transport: str, message: str) -> None:
    text = f"port 0\n<transport tls>\n{transport.format(**{k: str(v) for k, v in certs.items()})}\n</transport>\n"
    with pytest.raises(ConfigError, match=message):
        InputDriver("forward", text)


@pytest.mark.parametrize("extra, message", [
    ("tls_cert_path /nonexistent/ca.pem", "specified cert path does not exist:/nonexistent/ca.pem"),
    ("tls_cert_thumbprint abc", "This parameter is for only Windows"),
    ("tls_client_cert_path {client}", "tls_client_cert_path and tls_client_private_key_path go together"),
])
def test_client_configuration_errors(certs: dict[str, Path], extra: str, message: str) -> None:
    text = client_conf(24224, extra=extra.format(**{k: str(v) for k, v in certs.items()}))
    with pytest.raises(ConfigError, match=message):
        OutputDriver("forward", text)


def test_a_server_pinned_to_tls_1_3_refuses_fluentds_default_1_2(certs: dict[str, Path]) -> None:
    pinned = "version TLSv1_3\n"
    trusted = f"tls_cert_path {certs['server']}"
    server, _client = send(server_conf(certs, pinned), lambda port: client_conf(port, extra=trusted), expect=0)
    assert server.events == []
    send(server_conf(certs, pinned), lambda port: client_conf(port, extra=trusted + "\ntls_version TLSv1_3"))
