"""MQTT devices: protocols ``mqtt`` and ``mqtts`` (TLS), MQTT 5.0 or 3.1.1 (``opts.mqtt_version``).

The device's TCP (or TLS) connection opens when the device starts; the script then speaks
MQTT over it:

- ``await mqtt_connect(client_id=None, keepalive=60, clean_start=True, username=None,
  password=None, will=None, properties=None)``: CONNECT, and wait for the CONNACK
  (``mqtt_connect_us``); the client id is the device's id unless given. Returns the CONNACK
  (``session_present``, ``reason_code``, ``properties``). A refusal raises ``MqttReasonError``,
  counted by its reason (``not_authorized_error_count``, ``bad_user_name_or_password_error_count``).
- ``await publish(topic, payload, qos=0, retain=False, properties=None)``: QoS 0 is sent and
  done; QoS 1 waits for the PUBACK, QoS 2 for the PUBREC and then the PUBCOMP (``publish_us``,
  from the PUBLISH to the last answer). Every publish counts ``publish_count``; a failure
  reason code is a counted ``MqttReasonError`` (``quota_exceeded_error_count``, ...).
- ``await subscribe(topic_filter, qos=0, properties=None)``: returns the QoS the broker granted;
  ``await unsubscribe(topic_filter)``.
- ``await mqtt_receive(timeout=5000)``: the next message the broker delivered, waiting up to
  ``timeout`` ms; ``mqtt_fetch()``: the next one if any is queued, else ``None``. A message has
  ``topic``, ``payload`` (bytes), ``qos``, ``retain``, ``dup`` and ``properties``; each counts
  ``message_count``. At most 1,024 wait; past that the oldest is dropped and counted
  (``mqtt_dropped_message_count``).
- ``await mqtt_disconnect()``: DISCONNECT, and the connection closes.

The engine, not the script, keeps the session alive: a PINGREQ goes out whenever the device
has sent nothing for the keep-alive (the broker's ``server_keep_alive`` when it sets one), and
a PINGRESP that does not come within the device's timeout is counted
(``ping_timeout_error_count``) and ends the connection. Inbound QoS 1 and 2 messages are
acknowledged by the engine (PUBACK; PUBREC, then PUBCOMP on the broker's PUBREL). A QoS 2
message the broker sends again before its PUBREL is answered again but delivered once
(``mqtt_duplicate_message_count``).

Every wait is bounded by ``timeout`` (ms) or the plan's ``timeout_ms`` (``timeout_error_count``).
A broker that breaks the protocol is a counted ``MqttProtocolError`` (``protocol_error_count``;
MQTT 5 sends it a DISCONNECT with the reason first); a connection that ends while the script
still uses it raises and counts as on every protocol (``closed_error_count``,
``conn_reset_error_count``...). A function used out of turn (publishing before
``mqtt_connect``, two receives at once) raises ``LocalProtocolError``.
"""
import asyncio
import collections
import ssl

from stressgrid._core.deadline import DeadlineTimer, passed
from stressgrid._core.device import current_device, now_us, wait_seconds
from stressgrid._core.mqtt import (AUTH, CONNACK, DISCONNECT, MQTT_3_1_1, MQTT_5, PINGRESP, PUBACK, PUBCOMP,
                                   PACKET_NAMES, PUBLISH, PUBREC, PUBREL, SUBACK, UNSUBACK, MqttCore,
                                   MqttProtocolError, reason_name)
from stressgrid.errors import (ConnectionClosedError, LocalProtocolError, MqttReasonError, TlsError,
                               count_error, lost_connection_error)
from stressgrid.plan.constants import DEFAULT_MQTT_VERSION

from .connect import connect
from .tls import context_for
from .waiting import HoldsTimer, WriteFlow

MAX_QUEUED_MESSAGES = 1024
# opts.mqtt_version -> the protocol level CONNECT carries.
VERSIONS = {"5.0": MQTT_5, "3.1.1": MQTT_3_1_1}
FAILURE = 0x80  # reason codes from here on are failures
CONNACK_KEY = 0  # the pending CONNECT waits under this key (packet identifiers start at 1)


class PingTimeoutError(ConnectionClosedError):
    """The broker did not answer a keep-alive PINGREQ in time: the connection is taken as dead."""

    reason = "ping_timeout"


def protocol_level(opts):
    """The MQTT protocol level (4 or 5) of a plan's ``opts.mqtt_version``."""
    return VERSIONS[getattr(opts, "mqtt_version", DEFAULT_MQTT_VERSION) or DEFAULT_MQTT_VERSION]


class _Pending:
    """A request waiting for its answer: the future the script awaits, its deadline, what it waits for."""

    __slots__ = ("future", "deadline_us", "waits_for")

    def __init__(self, future, deadline_us, waits_for):
        self.future = future
        self.deadline_us = deadline_us
        self.waits_for = waits_for


class MqttClient(HoldsTimer, WriteFlow, asyncio.Protocol):
    """A device's MQTT connection: bytes to the core, packets to the waiting script functions."""

    __slots__ = ("device", "loop", "recorder", "core", "transport", "timer", "connected", "keepalive_us",
                 "sent_us", "pong_deadline_us", "pending", "next_id", "messages", "unreleased", "receiver",
                 "receive_deadline_us", "failure", "lost", "lost_exc", "broker_reason", "ended_here",
                 "paused", "drain_waiters")

    def __init__(self, device):
        self.device = device
        self.loop = device.loop
        self.recorder = device.recorder
        self.core = MqttCore(protocol_level(device.opts))
        self.transport = None
        self.timer = None            # made when the first deadline is needed
        self.connected = False
        self.keepalive_us = 0
        self.sent_us = 0             # when the last packet went out (keep-alive counts from it)
        self.pong_deadline_us = 0    # while a PINGREQ waits for its PINGRESP
        self.pending = None          # packet identifier (CONNACK_KEY for CONNECT) -> _Pending
        self.next_id = 0
        self.messages = None         # deque of received PUBLISH packets
        self.unreleased = None       # identifiers of QoS 2 messages received, until their PUBREL
        self.receiver = None         # the future of a waiting mqtt_receive
        self.receive_deadline_us = 0
        self.failure = None          # an error that ended the connection, counted, until raised once
        self.lost = False
        self.lost_exc = None
        self.broker_reason = None    # the reason code of the broker's DISCONNECT
        self.ended_here = False      # this side sent DISCONNECT or gave up on the connection
        self.paused = False
        self.drain_waiters = None

    async def open(self):
        device = self.device
        address = device.address
        tls = None
        if address.protocol == "mqtts":
            try:
                tls = context_for(device.opts, ())
            except (OSError, ssl.SSLError) as exc:
                raise count_error(self.recorder, TlsError(f"cannot use the TLS settings: {exc}")) from None
        await connect(self.recorder, self.loop, lambda: self, address.connect_host, address.port,
                      device.timeout_s, tls=tls, server_hostname=address.host if tls is not None else None)

    def close(self):
        """Say goodbye (DISCONNECT) and close; never raises."""
        try:
            self.drop_timer()
            if not self.ended:
                if self.connected:
                    self.transport.write(self.core.disconnect())
                self.ended_here = True
            if self.transport is not None and not self.lost:
                self.transport.close()
        except Exception:  # noqa: BLE001 - close must not raise
            pass

    # -- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            packets = self.core.feed(data)
        except MqttProtocolError as exc:
            self.failure = count_error(self.recorder, exc)
            if self.core.version == MQTT_5 and self.connected:
                self.transport.write(self.core.disconnect(exc.reason_code))
            self._give_up()
            return
        if packets is not None:
            for packet in packets:
                self._on_packet(packet)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.lost = True
        self.lost_exc = exc
        self.drop_timer()
        self._wake_all()
        self._release_drain_waiters()

    # -- packets from the broker -----------------------------------------------------

    def _on_packet(self, packet):
        kind = packet.type
        if kind == PUBLISH:
            self._on_publish(packet)
        elif kind == PUBACK or kind == PUBCOMP or kind == SUBACK or kind == UNSUBACK or kind == CONNACK:
            self._answer(CONNACK_KEY if kind == CONNACK else packet.packet_id, kind, packet)
        elif kind == PUBREC:
            if packet.reason_code < FAILURE:
                self._write(self.core.pubrel(packet.packet_id))
                pending = self.pending.get(packet.packet_id) if self.pending else None
                if pending is not None and pending.waits_for == PUBREC:
                    pending.waits_for = PUBCOMP
            else:
                self._answer(packet.packet_id, PUBREC, packet)
        elif kind == PUBREL:
            unreleased = self.unreleased
            if unreleased is not None:
                unreleased.discard(packet.packet_id)
                if not unreleased:
                    self.unreleased = None
            self._write(self.core.pubcomp(packet.packet_id))
        elif kind == PINGRESP:
            self.pong_deadline_us = 0
        elif kind == DISCONNECT:
            self.broker_reason = packet.reason_code
            self.transport.close()
        elif kind == AUTH:  # this client never starts an extended authentication
            self.failure = count_error(self.recorder, MqttProtocolError(
                "the broker sent AUTH, but this client asked for no extended authentication", 0x82))
            self._write(self.core.disconnect(0x82))
            self._give_up()

    def _on_publish(self, packet):
        qos = packet.qos
        if qos == 1:
            self._write(self.core.puback(packet.packet_id))
        elif qos == 2:
            self._write(self.core.pubrec(packet.packet_id))
            unreleased = self.unreleased
            if unreleased is None:
                unreleased = self.unreleased = set()
            elif packet.packet_id in unreleased:
                # Sent again before the broker had our PUBREC: exactly once is delivered once.
                self.recorder.counter("mqtt_duplicate_message_count").value += 1
                return
            unreleased.add(packet.packet_id)
        self.recorder.counter("message_count").value += 1
        messages = self.messages
        if messages is None:
            messages = self.messages = collections.deque()
        elif len(messages) >= MAX_QUEUED_MESSAGES:
            messages.popleft()
            self.recorder.counter("mqtt_dropped_message_count").value += 1
        messages.append(packet)
        receiver = self.receiver
        if receiver is not None and not receiver.done():
            receiver.set_result(None)

    def _answer(self, key, kind, packet):
        pending = self.pending.get(key) if self.pending else None
        if pending is None or pending.waits_for != kind:
            return  # the answer to a request that timed out, or one this client never sent
        del self.pending[key]
        if not self.pending:
            self.pending = None  # an idle device holds no empty dict
        if not pending.future.done():
            pending.future.set_result(packet)

    # -- deadlines: requests, receives and the keep-alive, on one timer -------------------

    def _arm(self, deadline_us):
        timer = self.timer
        if timer is None:
            timer = self.timer = DeadlineTimer(self.loop, self)
        if timer.deadline_us == 0 or deadline_us < timer.deadline_us:
            timer.arm(deadline_us)

    def on_deadline(self):
        """The timer's deadline passed: expire what is due, ping when due, arm for the next."""
        now = now_us()
        self.timer.cancel()
        if self.pong_deadline_us and passed(self.pong_deadline_us, now):
            self.failure = count_error(self.recorder, PingTimeoutError(
                f"no PINGRESP within {self.device.timeout_s * 1000:.0f} ms of a PINGREQ"))
            self._give_up()
            return
        if self.pending:
            for key, pending in list(self.pending.items()):
                if passed(pending.deadline_us, now):
                    del self.pending[key]
                    if not pending.future.done():
                        pending.future.set_exception(TimeoutError(
                            f"no {PACKET_NAMES[pending.waits_for]} within the time allowed"))
                else:
                    self._arm(pending.deadline_us)
            if not self.pending:
                self.pending = None
        if self.receive_deadline_us:
            if passed(self.receive_deadline_us, now):
                self.receive_deadline_us = 0
                receiver = self.receiver
                if receiver is not None and not receiver.done():
                    receiver.set_exception(TimeoutError("no MQTT message within the time allowed"))
            else:
                self._arm(self.receive_deadline_us)
        if self.keepalive_us and not self.ended:
            if self.pong_deadline_us:
                self._arm(self.pong_deadline_us)
            elif passed(self.sent_us + self.keepalive_us, now):
                self._write(self.core.pingreq())
                self.pong_deadline_us = now + int(self.device.timeout_s * 1e6)
                self._arm(min(self.pong_deadline_us, self.sent_us + self.keepalive_us))
            else:
                self._arm(self.sent_us + self.keepalive_us)

    # -- internals ----------------------------------------------------------------------

    @property
    def ended(self):
        return self.lost or self.ended_here or self.broker_reason is not None or self.core.failed

    def _write(self, data):
        if not self.lost and self.transport is not None:
            self.transport.write(data)
            self.sent_us = now_us()

    def _give_up(self):
        """End the connection from this side after a failure; every waiter wakes."""
        self.ended_here = True
        self.drop_timer()
        if self.transport is not None and not self.lost:
            self.transport.close()
        self._wake_all()

    def _wake_all(self):
        pending, self.pending = self.pending, None
        for entry in (pending or {}).values():
            if not entry.future.done():
                entry.future.set_result(None)
        receiver = self.receiver
        if receiver is not None and not receiver.done():
            receiver.set_result(None)

    def _closed_error(self):
        """The exception for a use of the connection after it ended (counted)."""
        failure = self.failure
        if failure is not None:
            self.failure = None
            return failure  # raised once: counted where it happened
        if self.broker_reason is not None:
            error = ConnectionClosedError(f"the broker disconnected ({reason_name(self.broker_reason)})")
        elif self.lost_exc is not None:
            error = lost_connection_error(self.lost_exc, "MQTT connection lost")
        elif self.ended_here:
            error = ConnectionClosedError("MQTT connection closed by this device")
        else:
            error = ConnectionClosedError("MQTT connection closed by the broker")
        return count_error(self.recorder, error)

    def _check_usable(self, what):
        if not self.connected and not self.ended:
            raise LocalProtocolError(f"{what} needs mqtt_connect first")
        if self.ended:
            raise self._closed_error()

    def _packet_id(self):
        pending = self.pending
        for _ in range(0xFFFF):
            self.next_id = self.next_id % 0xFFFF + 1
            if pending is None or self.next_id not in pending:
                return self.next_id
        raise LocalProtocolError("65,535 MQTT requests in flight on one connection")

    async def _request(self, key, data, waits_for, timeout_s):
        """Send ``data`` and wait for the answer ``waits_for`` under ``key``: the packet, or raises."""
        future = self.loop.create_future()
        deadline = now_us() + int(timeout_s * 1e6)
        if self.pending is None:
            self.pending = {}
        self.pending[key] = _Pending(future, deadline, waits_for)
        self._write(data)
        self._arm(deadline)
        try:
            packet = await future
        except TimeoutError as exc:
            raise count_error(self.recorder, exc) from None
        if packet is None:
            raise self._closed_error()
        return packet

    def _refused(self, packet, code, what):
        name = reason_name(code)
        return count_error(self.recorder, MqttReasonError(f"{what}: the broker answered {packet.name} with "
                                                          f"reason 0x{code:02x} ({name})", code, name, packet.name))

    async def _drain(self):
        if self.paused and not self.ended:
            await self._drain_waiter(self.loop)

    # -- the script functions' work -----------------------------------------------------

    async def mqtt_connect(self, client_id, keepalive, clean_start, username, password, will, properties,
                           timeout_s):
        if self.connected:
            raise LocalProtocolError("mqtt_connect was already called on this device's connection")
        if self.ended or self.transport is None:
            raise self._closed_error()
        client_id = self.device.device_id if client_id is None else client_id
        data = self.core.connect(client_id, keepalive, clean_start, username, password, will, properties)
        started = now_us()
        connack = await self._request(CONNACK_KEY, data, CONNACK, timeout_s)
        if connack.reason_code >= FAILURE:
            raise self._refused(connack, connack.reason_code, "CONNECT")
        self.recorder.histogram("mqtt_connect_us").record(now_us() - started)
        self.connected = True
        if connack.properties is not None:
            keepalive = connack.properties.get("server_keep_alive", keepalive)
        if keepalive:
            self.keepalive_us = keepalive * 1_000_000
            self._arm(self.sent_us + self.keepalive_us)
        return connack

    async def publish(self, topic, payload, qos, retain, properties, timeout_s):
        self._check_usable("publish")
        if qos == 0:
            self._write(self.core.publish(topic, payload, 0, retain, 0, False, properties))
            self.recorder.counter("publish_count").value += 1
            await self._drain()
            return 0
        packet_id = self._packet_id()
        data = self.core.publish(topic, payload, qos, retain, packet_id, False, properties)
        started = now_us()
        answer = await self._request(packet_id, data, PUBACK if qos == 1 else PUBREC, timeout_s)
        if answer.reason_code >= FAILURE:
            raise self._refused(answer, answer.reason_code, f"PUBLISH to {topic!r}")
        self.recorder.histogram("publish_us").record(now_us() - started)
        self.recorder.counter("publish_count").value += 1
        return answer.reason_code

    async def subscribe(self, topic_filter, qos, properties, timeout_s):
        self._check_usable("subscribe")
        packet_id = self._packet_id()
        data = self.core.subscribe(packet_id, [(topic_filter, qos)], properties)
        suback = await self._request(packet_id, data, SUBACK, timeout_s)
        code = suback.reason_codes[0]
        if code >= FAILURE:
            raise self._refused(suback, code, f"SUBSCRIBE to {topic_filter!r}")
        return code

    async def unsubscribe(self, topic_filter, timeout_s):
        self._check_usable("unsubscribe")
        packet_id = self._packet_id()
        data = self.core.unsubscribe(packet_id, [topic_filter])
        unsuback = await self._request(packet_id, data, UNSUBACK, timeout_s)
        code = unsuback.reason_codes[0] if unsuback.reason_codes else 0
        if code >= FAILURE:
            raise self._refused(unsuback, code, f"UNSUBSCRIBE from {topic_filter!r}")

    def fetch(self):
        messages = self.messages
        if messages:
            message = messages.popleft()
            if not messages:
                self.messages = None  # nor an empty queue
            return message
        if self.ended:
            raise self._closed_error()
        if not self.connected:
            raise LocalProtocolError("mqtt_fetch needs mqtt_connect first")
        return None

    async def receive(self, timeout_s):
        message = self.fetch()
        if message is not None:
            return message
        if self.receiver is not None:
            raise LocalProtocolError("one mqtt_receive at a time per device")
        receiver = self.receiver = self.loop.create_future()
        self.receive_deadline_us = now_us() + int(timeout_s * 1e6)
        self._arm(self.receive_deadline_us)
        try:
            await receiver
        except TimeoutError as exc:
            raise count_error(self.recorder, exc) from None
        finally:
            self.receiver = None
            self.receive_deadline_us = 0
        return self.fetch() or self._raise_closed()

    def _raise_closed(self):
        raise self._closed_error()

    async def disconnect(self):
        if self.ended:
            raise self._closed_error()
        if self.connected:
            self._write(self.core.disconnect())
        self.ended_here = True
        self.drop_timer()
        self.transport.close()


def create_client(device):
    return MqttClient(device)


def _client(what):
    client = current_device().client
    if not isinstance(client, MqttClient):
        raise LocalProtocolError(f"{what} needs an MQTT target (mqtt, mqtts)")
    return client


def _qos(qos):
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
    return qos


async def mqtt_connect(client_id=None, keepalive=60, clean_start=True, username=None, password=None, will=None,
                       properties=None, *, timeout=None):
    """Connect the device's MQTT session; returns the CONNACK."""
    client = _client("mqtt_connect")
    return await client.mqtt_connect(client_id, keepalive, clean_start, username, password, will, properties,
                                     wait_seconds(timeout, client.device))


async def publish(topic, payload, qos=0, retain=False, properties=None, *, timeout=None):
    """Publish ``payload`` (bytes or str) on ``topic``; QoS 1 and 2 wait for the broker's answer."""
    client = _client("publish")
    return await client.publish(topic, payload, _qos(qos), retain, properties, wait_seconds(timeout, client.device))


async def subscribe(topic_filter, qos=0, properties=None, *, timeout=None):
    """Subscribe to ``topic_filter``; returns the granted QoS."""
    client = _client("subscribe")
    return await client.subscribe(topic_filter, _qos(qos), properties, wait_seconds(timeout, client.device))


async def unsubscribe(topic_filter, *, timeout=None):
    client = _client("unsubscribe")
    await client.unsubscribe(topic_filter, wait_seconds(timeout, client.device))


async def mqtt_receive(timeout=None):
    """The next message delivered to the device, waiting up to ``timeout`` ms."""
    client = _client("mqtt_receive")
    return await client.receive(wait_seconds(timeout, client.device))


def mqtt_fetch():
    """The next delivered message if one waits, else ``None``."""
    return _client("mqtt_fetch").fetch()


async def mqtt_disconnect():
    await _client("mqtt_disconnect").disconnect()


BUILTINS = {"mqtt_connect": mqtt_connect, "publish": publish, "subscribe": subscribe, "unsubscribe": unsubscribe,
            "mqtt_receive": mqtt_receive, "mqtt_fetch": mqtt_fetch, "mqtt_disconnect": mqtt_disconnect}
