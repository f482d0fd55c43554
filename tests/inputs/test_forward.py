"""forward input: the Forward protocol's four modes, acks, invalid and broken input, the <security>
handshake and the UDP heartbeat, over real sockets on 127.0.0.1 (a client written from the protocol
specification, as fluent-logger and out_forward send)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import struct
from typing import Any, Callable

import msgpack
import pytest

from kawa.buffer.buffer import BufferOverflowError
from kawa.errors import ConfigError
from kawa.testing.drivers import InputDriver

NS = 1_000_000_000


def event_time(seconds: int, nanos: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


class Client:
    """One TCP connection to the input; answers (acks, HELO, PONG) are decoded as they arrive."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.unpacker = msgpack.Unpacker(raw=False)

    @classmethod
    async def connect(cls, port: int) -> "Client":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, obj: Any) -> None:
        self.writer.write(obj if isinstance(obj, bytes) else pack(obj))
        await self.writer.drain()

    async def answer(self, timeout: float = 5.0) -> Any:
        while True:
            for obj in self.unpacker:
                return obj
            data = await asyncio.wait_for(self.reader.read(4096), timeout)
            if not data:
                raise EOFError("the input closed the connection")
            self.unpacker.feed(data)

    async def closed(self, timeout: float = 5.0) -> bool:
        """True once the input closed the connection (read gives EOF)."""
        try:
            return await asyncio.wait_for(self.reader.read(4096), timeout) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.writer.close()


def run(d: InputDriver, body: Callable[[InputDriver, int], Any]) -> None:
    async def go() -> None:
        async with d.run():
            await body(d, d.instance.port)
    asyncio.run(go())


def driver(conf: str = "") -> InputDriver:
    return InputDriver("forward", "bind 127.0.0.1\nport 0\n" + conf)


def test_the_four_modes_with_their_times_and_acks() -> None:
    d = driver()

    async def body(d: InputDriver, port: int) -> None:
        c = await Client.connect(port)
        await c.send(["app.message", 1_700_000_000, {"a": 1}])
        await c.send(["app.forward", [[1_700_000_001, {"b": 2}], [event_time(1_700_000_002, 5), {"c": 3}]],
                      {"chunk": "c1"}])
        assert await c.answer() == {"ack": "c1"}
        packed = pack([1_700_000_003, {"d": 4}]) + pack([[event_time(1_700_000_004, 7), {"meta": 1}], {"e": 5}])
        await c.send(["app.packed", packed, {"chunk": "c2", "size": 2}])
        assert await c.answer() == {"ack": "c2"}
        await c.send(["app.gzip", gzip.compress(pack([1_700_000_005, {"f": 6}])) +
                      gzip.compress(pack([1_700_000_006, {"g": 7}])), {"chunk": "c3", "compressed": "gzip"}])
        assert await c.answer() == {"ack": "c3"}
        c.close()

    run(d, body)
    assert d.events == [
        ("app.message", 1_700_000_000 * NS, {"a": 1}),
        ("app.forward", 1_700_000_001 * NS, {"b": 2}),
        ("app.forward", 1_700_000_002 * NS + 5, {"c": 3}),
        ("app.packed", 1_700_000_003 * NS, {"d": 4}),
        ("app.packed", 1_700_000_004 * NS + 7, {"e": 5}),          # Fluent Bit's [EventTime, metadata]
        ("app.gzip", 1_700_000_005 * NS, {"f": 6}),                # two gzip members, one stream
        ("app.gzip", 1_700_000_006 * NS, {"g": 7}),
    ]
    assert d.instance.stats()["acks"] == 3


def test_the_ack_waits_until_the_events_are_stored_without_holding_the_connection_up() -> None:
    """A memory buffer's events are stored once delivered: the sender must keep its chunk until then,
    and meanwhile further chunks of the same connection are taken."""
    d = driver()
    d.emitter.store_after = 0.6

    async def body(d: InputDriver, port: int) -> None:
        c = await Client.connect(port)
        await c.send(["a", [[1_700_000_000, {"n": 1}]], {"chunk": "first"}])
        with pytest.raises(asyncio.TimeoutError):
            await c.answer(timeout=0.3)
        await c.send(["a", [[1_700_000_000, {"n": 2}]], {"chunk": "second"}])
        await d.wait_for(lambda: len(d.records) == 2, 2.0)     # taken while the first ack waits
        assert await c.answer() == {"ack": "first"}
        assert await c.answer() == {"ack": "second"}
        c.close()

    run(d, body)


def test_events_that_cannot_be_emitted_get_no_ack_and_the_connection_closes() -> None:
    d = driver()
    d.emitter.refuse = BufferOverflowError("buffer space has too many data")

    async def body(d: InputDriver, port: int) -> None:
        c = await Client.connect(port)
        await c.send(["a", 1_700_000_000, {"n": 1}, {"chunk": "x"}])
        assert await c.closed()                  # the sender learns at once and sends the chunk again
        c2 = await Client.connect(port)
        await c2.send(["a", 1_700_000_000, {"n": 2}])       # no ack asked: lost, and said so
        await d.wait_for(lambda: any("they are lost" in line for line in d.logs))
        d.emitter.refuse = None
        await c2.send(["a", 1_700_000_000, {"n": 3}, {"chunk": "y"}])
        assert await c2.answer() == {"ack": "y"}
        c2.close()

    run(d, body)
    assert d.records == [{"n": 3}]
    logs = d.logs
    assert any("could not emit the events; no ack is sent and the connection is closed, so the sender sends "
               "them again" in line and 'error="BufferOverflowError: buffer space has too many data"' in line
               for line in logs), logs
    assert any("could not emit the events; they are lost (the sender asked for no ack)" in line for line in logs)


def test_invalid_events_are_dropped_with_fluentds_warnings() -> None:
    d = driver()

    async def body(d: InputDriver, port: int) -> None:
        c = await Client.connect(port)
        await c.send(["a", [[1.5, {"f": 1}], ["x", {"g": 2}], [1_700_000_000, "text"], [1_700_000_000, {"ok": 1}]],
                      {"chunk": "k"}])
        assert await c.answer() == {"ack": "k"}
        await c.send(["a", None, {"h": 1}])
        await c.send(["b", 0, {"now": 1}])                  # 0: the sender set no time
        await d.wait_for(lambda: len(d.records) == 2)
        c.close()

    d.clock = lambda: 42 * NS
    d.instance.ctx.clock = d.clock
    run(d, body)
    assert d.events == [("a", 1_700_000_000 * NS, {"ok": 1}), ("b", 42 * NS, {"now": 1})]
    warns = [line.split("[warn]: ", 1)[1] for line in d.logs if "[warn]" in line]
    assert warns == [
        '#0 skip invalid event: host="127.0.0.1" tag="a" time=1.5 record={"f"=>1}',
        '#0 skip invalid event: host="127.0.0.1" tag="a" time="x" record={"g"=>2}',
        '#0 skip invalid event: host="127.0.0.1" tag="a" time=1700000000 record="text"',
        '#0 got invalid event and drop it: host="127.0.0.1" tag="a" time=nil record={"h"=>1}',
    ]
    assert d.instance.stats()["invalid_events"] == 4


def test_bytes_that_are_not_the_protocol_close_that_connection_only() -> None:
    d = driver()

    async def body(d: InputDriver, port: int) -> None:
        bad = await Client.connect(port)
        await bad.send(b"\xc1 this is not msgpack")
        assert await bad.closed()
        c = await Client.connect(port)
        await c.send("just a string")                        # msgpack, but no message
        await c.send(["a", 1_700_000_000, {"n": 1}, {"chunk": "ok"}])
        assert await c.answer() == {"ack": "ok"}
        c.close()

    run(d, body)
    logs = d.logs
    assert any("closing a connection that sent data that is not the Forward protocol" in line
               and 'error="FormatError: not valid msgpack"' in line for line in logs), logs
    assert any('incoming chunk is broken: host="127.0.0.1" msg="just a string"' in line for line in logs), logs
    assert d.records == [{"n": 1}]
    assert d.instance.stats()["broken_connections"] == 1


def test_chunk_size_limits() -> None:
    d = driver("chunk_size_limit 200\nchunk_size_warn_limit 100")

    async def body(d: InputDriver, port: int) -> None:
        c = await Client.connect(port)
        await c.send(["a", [[1_700_000_000, {"n": "x" * 150}]], {"chunk": "warned"}])
        assert await c.answer() == {"ack": "warned"}
        await c.send(["a", [[1_700_000_000, {"n": "y" * 300}]], {"chunk": "dropped"}])
        await c.send(["a", [[1_700_000_000, {"n": "z"}]], {"chunk": "small"}])
        assert await c.answer() == {"ack": "small"}          # the dropped one is never acked
        c.close()

    run(d, body)
    assert [r["n"][0] for r in d.records] == ["x", "z"]
    logs = d.logs
    assert any("Input chunk size is larger than 'chunk_size_warn_limit': tag=\"a\" host=\"127.0.0.1\" limit=100"
               in line for line in logs), logs
    assert any("Input chunk size is larger than 'chunk_size_limit', dropped: tag=\"a\" host=\"127.0.0.1\" "
               "limit=200" in line for line in logs), logs


def test_decompression_size_limit_refuses_a_gzip_bomb() -> None:
    d = driver("decompression_size_limit 1k")

    async def body(d: InputDriver, port: int) -> None:
        c = await Client.connect(port)
        big = gzip.compress(pack([1_700_000_000, {"n": "0" * 5000}]))
        await c.send(["a", big, {"chunk": "bomb", "compressed": "gzip"}])
        await c.send(["a", 1_700_000_000, {"n": 1}, {"chunk": "after"}])
        assert await c.answer() == {"ack": "after"}
        c.close()

    run(d, body)
    assert d.records == [{"n": 1}]
    assert any("dropped a message whose entries cannot be read" in line
               and "larger than decompression_size_limit (1024 bytes)" in line for line in d.logs)


def test_tag_prefix_and_source_keys() -> None:
    d = driver("add_tag_prefix in\nsource_address_key addr\nsource_hostname_key host")

    async def body(d: InputDriver, port: int) -> None:
        c = await Client.connect(port)
        await c.send(["app", 1_700_000_000, {"n": 1}])
        await d.wait_for(lambda: len(d.records) == 1)
        c.close()

    run(d, body)
    [(tag, _t, record)] = d.events
    assert tag == "in.app"
    assert record["addr"] == "127.0.0.1" and record["host"] in ("localhost", "127.0.0.1")


def test_json_messages_are_answered_in_json() -> None:
    d = driver()

    async def body(d: InputDriver, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        text = b'["j", 1700000000, {"a": "\xc3\xa9"}, {"chunk": "j1"}] ["j", [[1700000001, {"b": 2}]]]'
        for i in range(0, len(text), 7):                     # cut anywhere, even inside a character
            writer.write(text[i:i + 7])
            await writer.drain()
            await asyncio.sleep(0.001)
        assert await asyncio.wait_for(reader.read(100), 5) == b'{"ack":"j1"}'
        await d.wait_for(lambda: len(d.records) == 2)
        writer.close()

    run(d, body)
    assert d.records == [{"a": "é"}, {"b": 2}]


def test_udp_heartbeat_is_answered() -> None:
    d = driver()

    async def body(d: InputDriver, port: int) -> None:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[bytes] = loop.create_future()

        class Probe(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                got.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Probe, remote_addr=("127.0.0.1", port))
        transport.sendto(b"\0")
        assert await asyncio.wait_for(got, 5) == b"\0"
        transport.close()

    run(d, body)


def test_deny_keepalive_closes_after_the_first_message_and_its_ack() -> None:
    d = driver("deny_keepalive true")

    async def body(d: InputDriver, port: int) -> None:
        c = await Client.connect(port)
        await c.send(["a", 1_700_000_000, {"n": 1}, {"chunk": "only"}])
        assert await c.answer() == {"ack": "only"}
        assert await c.closed()

    run(d, body)


SECURITY = """
<security>
  self_hostname server.local
  shared_key common_key
  user_auth true
  allow_anonymous_source false
  <user>
    username alice
    password alice_pw
  </user>
  <user>
    username bob
    password bob_pw
  </user>
  <client>
    network 127.0.0.0/8
    shared_key loopback_key
    users alice
  </client>
</security>
"""


def sha512_hex(*parts: Any) -> str:
    h = hashlib.sha512()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
    return h.hexdigest()


async def handshake(port: int, key: str, user: str, password: str) -> tuple[Client, list[Any]]:
    c = await Client.connect(port)
    helo = await c.answer()
    assert helo[0] == "HELO" and helo[1]["keepalive"] is True
    nonce, user_salt = helo[1]["nonce"], helo[1]["auth"]
    salt = b"0123456789abcdef"
    await c.send(["PING", "client.local", salt, sha512_hex(salt, "client.local", nonce, key),
                  user, sha512_hex(user_salt, user, password)])
    pong = await c.answer()
    if pong[1]:
        assert pong[3] == "server.local" and pong[4] == sha512_hex(salt, "server.local", nonce, key)
    return c, pong


def test_security_handshake_with_the_clients_key_and_user() -> None:
    d = driver(SECURITY)

    async def body(d: InputDriver, port: int) -> None:
        c, pong = await handshake(port, "loopback_key", "alice", "alice_pw")
        assert pong[:3] == ["PONG", True, ""]
        await c.send(["secure", 1_700_000_000, {"n": 1}, {"chunk": "s"}])
        assert await c.answer() == {"ack": "s"}
        c.close()
        for key, user, password, reason in [
                ("common_key", "alice", "alice_pw", "shared_key mismatch"),     # the <client>'s key rules
                ("loopback_key", "alice", "wrong", "username/password mismatch"),
                ("loopback_key", "bob", "bob_pw", "username/password mismatch")]:  # not a user of this client
            c, pong = await handshake(port, key, user, password)
            assert pong == ["PONG", False, reason, "", ""]
            assert await c.closed()

    run(d, body)
    assert d.records == [{"n": 1}]
    warns = [line.split("[warn]: #0 ", 1)[1] for line in d.logs if "[warn]" in line]
    assert warns == ['Shared key mismatch address="127.0.0.1" hostname="client.local"',
                     'Authentication failed address="127.0.0.1" hostname="client.local" username="alice"',
                     'Authentication failed address="127.0.0.1" hostname="client.local" username="bob"']


def test_events_before_the_handshake_are_refused() -> None:
    d = driver(SECURITY)

    async def body(d: InputDriver, port: int) -> None:
        c = await Client.connect(port)
        assert (await c.answer())[0] == "HELO"
        await c.send(["a", 1_700_000_000, {"n": 1}])
        assert await c.answer() == ["PONG", False, "invalid ping message", "", ""]
        assert await c.closed()

    run(d, body)
    assert d.records == []


def test_anonymous_sources_refused_when_not_allowed() -> None:
    conf = SECURITY.replace("network 127.0.0.0/8", "network 10.0.0.0/8")
    d = driver(conf)

    async def body(d: InputDriver, port: int) -> None:
        _c, pong = await handshake(port, "common_key", "alice", "alice_pw")
        assert pong == ["PONG", False, "anonymous source host '127.0.0.1' denied", "", ""]

    run(d, body)


@pytest.mark.parametrize("conf, message", [
    ("tag \"\"", "'tag' parameter must not be empty"),
    ("add_tag_prefix \"\"", "'add_tag_prefix' parameter must not be empty"),
    ("send_keepalive_packet true\ndeny_keepalive true",
     "both 'send_keepalive_packet' and 'deny_keepalive' cannot be set to true"),
    ("source_hostname_key h\nresolve_hostname false", "resolve_hostname must be true with source_hostname_key"),
    ("<security>\nself_hostname s\nshared_key k\nuser_auth true\n</security>",
     "<user> sections required if user_auth enabled"),
    ("<security>\nself_hostname s\nshared_key k\nallow_anonymous_source false\n</security>",
     "<client> sections required if allow_anonymous_source disabled"),
    ("<security>\nself_hostname s\nshared_key k\n<client>\nnetwork 10.0.0.0/33\n</client>\n</security>",
     "network '10.0.0.0/33' address format is invalid"),
    ("<transport tls>\ninsecure true\n</transport>", "insecure: Fluentd generates a server certificate here"),
    ("<transport udp>\n</transport>", "<transport udp>: expected tcp or tls"),
])
def test_configuration_errors(conf: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        driver(conf)
