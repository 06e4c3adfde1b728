"""Protocol clients for devices, one module per protocol family.

Each module has:

- ``create_client(device)``: the per-device client. It has ``async open()``,
  called when the device starts (TCP/UDP connect there; HTTP connects lazily on
  its first request and may do nothing), and ``close()``, which must not raise.
- ``BUILTINS``: the script functions of the protocol, by name. They find the
  client as ``current_device().client``.
"""
import importlib

_MODULES = {
    "tcp": "stressgrid.protocols.tcp",
    "udp": "stressgrid.protocols.udp",
    "http10": "stressgrid.protocols.http1",
    "http10s": "stressgrid.protocols.http1",
    "http": "stressgrid.protocols.http1",
    "https": "stressgrid.protocols.http1",
    "http2": "stressgrid.protocols.http2",
    "http2s": "stressgrid.protocols.http2",
    "mqtt": "stressgrid.protocols.mqtt",
    "mqtts": "stressgrid.protocols.mqtt",
}


def protocol_module(protocol):
    """The module implementing ``protocol``; ``ValueError`` if there is none."""
    try:
        name = _MODULES[protocol]
    except KeyError:
        raise ValueError(f"unknown protocol {protocol!r}") from None
    return importlib.import_module(name)
