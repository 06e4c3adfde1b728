"""Names a device script may call, per protocol (DESIGN.md section 4).

This table is what the script checker uses; the runtime binds the same names.
"""

PROTOCOLS = ("http10", "http10s", "http", "https", "http2", "http2s", "tcp", "udp", "mqtt", "mqtts")
TLS_PROTOCOLS = frozenset({"http10s", "https", "http2s", "mqtts"})
HTTP1_PROTOCOLS = frozenset({"http10", "http10s", "http", "https"})
HTTP2_PROTOCOLS = frozenset({"http2", "http2s"})
HTTP_PROTOCOLS = HTTP1_PROTOCOLS | HTTP2_PROTOCOLS
MQTT_PROTOCOLS = frozenset({"mqtt", "mqtts"})

COMMON_SYNC = frozenset({
    "start_timing", "stop_timing", "stop_start_timing", "record_timing", "inc_counter", "check",
    "random_bits", "random_bytes",
})
COMMON_ASYNC = frozenset({"delay", "pace"})

HTTP_ASYNC = frozenset({"get", "head", "options", "delete", "post", "put", "patch"})
WS_ASYNC = frozenset({
    "ws_upgrade", "ws_send_text", "ws_send_binary", "ws_send_json",
    "ws_receive_text", "ws_receive_binary", "ws_receive_json",
})
WS_SYNC = frozenset({"ws_fetch_text", "ws_fetch_binary", "ws_fetch_json"})
SOCKET_ASYNC = frozenset({"send", "recv"})
MQTT_ASYNC = frozenset({"mqtt_connect", "publish", "subscribe", "unsubscribe", "mqtt_receive", "mqtt_disconnect"})
MQTT_SYNC = frozenset({"mqtt_fetch"})

ALL_PROTOCOL_FUNCTIONS = HTTP_ASYNC | WS_ASYNC | WS_SYNC | SOCKET_ASYNC | MQTT_ASYNC | MQTT_SYNC


def protocol_async_functions(protocol):
    """Awaitable functions a script of ``protocol`` has, common ones included."""
    names = set(COMMON_ASYNC)
    if protocol in HTTP_PROTOCOLS:
        names |= HTTP_ASYNC
    if protocol in HTTP1_PROTOCOLS:
        names |= WS_ASYNC
    if protocol in ("tcp", "udp"):
        names |= SOCKET_ASYNC
    if protocol in MQTT_PROTOCOLS:
        names |= MQTT_ASYNC
    return frozenset(names)


def protocol_sync_functions(protocol):
    """Plain (never awaited) functions a script of ``protocol`` has."""
    names = set(COMMON_SYNC)
    if protocol in HTTP1_PROTOCOLS:
        names |= WS_SYNC
    if protocol in MQTT_PROTOCOLS:
        names |= MQTT_SYNC
    return frozenset(names)


def protocol_functions(protocol):
    """Every function a script of ``protocol`` has, awaitable or not."""
    return protocol_async_functions(protocol) | protocol_sync_functions(protocol)


def protocol_description(protocol):
    if protocol in HTTP1_PROTOCOLS:
        return "HTTP and WebSocket functions"
    if protocol in HTTP2_PROTOCOLS:
        return "HTTP functions"
    if protocol in MQTT_PROTOCOLS:
        return "MQTT functions"
    return "send/recv"
