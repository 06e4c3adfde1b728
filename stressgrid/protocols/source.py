"""Source-address pools: the local addresses devices connect from.

One machine opens at most one connection per free ephemeral port for each
(source address, target address, target port). A pool of source addresses
multiplies that: every new connection binds the next address of the pool,
round-robin, before it connects. ``IP_BIND_ADDRESS_NO_PORT`` defers the choice
of the port to the connect, so the kernel shares ports across targets instead
of reserving one per bind.

A pool is written as comma-separated items: addresses (``127.0.0.2``), ranges
(``127.0.0.2-127.0.0.9``), networks (``10.0.0.0/28``: its host addresses), or
``auto`` alone: every address of the interface the system routes the target
through. ``parse_pool`` checks it strictly; ``install`` makes a pool this
process's; ``open_connection`` and ``open_datagram`` connect through it.
"""
import ipaddress
import socket
import sys

import psutil

from stressgrid._core.tls import open_tls
from stressgrid.plan.constants import MAX_POOL_ADDRESSES

AUTO = "auto"
# Linux's IP_BIND_ADDRESS_NO_PORT (not every Python exports it); elsewhere binds take a port.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT",
                                  24 if sys.platform.startswith("linux") else None)
# Any port: a UDP connect only asks the routing table, it sends nothing.
_ROUTE_PROBE_PORT = 9


class SourcePoolError(ValueError):
    """A pool specification that cannot be used; the message names the bad item."""


class SourcePool:
    """The source addresses of one process and a round-robin cursor over them per target.

    ``addresses`` are ``ipaddress`` objects; an ``auto`` pool has none and
    finds them per target (``addresses_for``). Each target has its own cursor,
    so that targets taken in turn do not each get only some of the addresses;
    ``start`` sets where every cursor begins (the worker's index).
    """

    def __init__(self, addresses=(), auto=False, start=0):
        self.addresses = tuple(addresses)
        self.auto = auto
        self._start = start
        self._cursors = {}  # target ip -> connections made to it
        self._by_family = {}  # family -> the pool's addresses of that family, as text
        self._auto_by_target = {}  # target ip -> the addresses routing there

    def __bool__(self):
        return self.auto or bool(self.addresses)

    @property
    def size(self):
        """How many addresses one target can be reached from: for ``auto``, the most of any interface."""
        if not self.auto:
            return len(self.addresses)
        return max((len(_usable(addresses)) for addresses in psutil.net_if_addrs().values()), default=0)

    def addresses_for(self, target_ip):
        """The pool's addresses that can reach ``target_ip`` (text), in order."""
        target = ipaddress.ip_address(target_ip)
        if self.auto:
            found = self._auto_by_target.get(target)
            if found is None:
                found = self._auto_by_target[target] = routing_interface_addresses(target)
            return found
        family = target.version
        found = self._by_family.get(family)
        if found is None:
            found = self._by_family[family] = [str(a) for a in self.addresses if a.version == family]
        return found

    def next_for(self, target_ip):
        """The source address the next connection to ``target_ip`` binds, or ``None`` (the system's choice)."""
        addresses = self.addresses_for(target_ip)
        if not addresses:
            return None
        cursor = self._cursors.get(target_ip, self._start)
        self._cursors[target_ip] = cursor + 1
        return addresses[cursor % len(addresses)]


def parse_pool(text, start=0):
    """A ``SourcePool`` from its specification; ``SourcePoolError`` names the first bad item."""
    items = [item.strip() for item in (text or "").split(",")]
    if items == [""]:
        return SourcePool(start=start)
    if AUTO in items:
        if len(items) > 1:
            raise SourcePoolError(f"{AUTO!r} stands alone: it cannot be combined with {text!r}")
        return SourcePool(auto=True, start=start)
    addresses = []
    for item in items:
        if not item:
            raise SourcePoolError(f"an empty item in {text!r}")
        addresses.extend(_parse_item(item))
        if len(addresses) > MAX_POOL_ADDRESSES:
            raise SourcePoolError(f"more than {MAX_POOL_ADDRESSES} addresses (at {item!r})")
    duplicates = len(addresses) - len(set(addresses))
    if duplicates:
        raise SourcePoolError(f"{duplicates} address(es) given more than once in {text!r}")
    return SourcePool(addresses, start=start)


def _parse_item(item):
    try:
        if "/" in item:
            network = ipaddress.ip_network(item, strict=True)
            hosts = list(network.hosts()) if network.num_addresses <= MAX_POOL_ADDRESSES + 2 else None
            if not hosts:
                raise SourcePoolError(f"network {item!r} has no host addresses or too many"
                                      f" (at most {MAX_POOL_ADDRESSES})")
            return hosts
        if "-" in item:
            first_text, last_text = (part.strip() for part in item.split("-", 1))
            first, last = ipaddress.ip_address(first_text), ipaddress.ip_address(last_text)
            if first.version != last.version:
                raise SourcePoolError(f"range {item!r} mixes IPv4 and IPv6")
            if last < first:
                raise SourcePoolError(f"range {item!r} ends before it starts")
            if int(last) - int(first) >= MAX_POOL_ADDRESSES:
                raise SourcePoolError(f"range {item!r} has more than {MAX_POOL_ADDRESSES} addresses")
            return [ipaddress.ip_address(value) for value in range(int(first), int(last) + 1)]
        return [ipaddress.ip_address(item)]
    except ValueError as exc:
        if isinstance(exc, SourcePoolError):
            raise
        raise SourcePoolError(f"not an address, range or network: {item!r} ({exc})") from None


def _usable(addresses):
    """The IPv4 and global IPv6 addresses of one interface (link-local IPv6 needs a scope)."""
    return [a.address for a in addresses
            if a.family == socket.AF_INET or (a.family == socket.AF_INET6 and "%" not in a.address
                                              and not ipaddress.ip_address(a.address).is_link_local)]


def routing_interface_addresses(target):
    """Every usable address of the interface the system routes ``target`` through, that
    interface's preferred source first. Sends nothing."""
    family = socket.AF_INET if target.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((str(target), _ROUTE_PROBE_PORT))
        except OSError:
            return []
        preferred = probe.getsockname()[0]
    for addresses in psutil.net_if_addrs().values():
        usable = [a for a in _usable(addresses) if ipaddress.ip_address(a).version == target.version]
        if preferred in usable:
            usable.remove(preferred)
            return [preferred, *usable]
    return [preferred]


# -- this process's pool -----------------------------------------------------------

_pool = SourcePool()


def install(pool):
    """Make ``pool`` the one every connection of this process binds from."""
    global _pool
    _pool = pool


def bound_socket(kind, target_ip):
    """A non-blocking socket of ``kind`` bound to the pool's next address for ``target_ip``,
    or ``None`` when the pool has none for it. A bind that fails raises its ``OSError``
    (``EADDRNOTAVAIL``: the address is not this machine's)."""
    source = _pool.next_for(target_ip) if _pool else None
    if source is None:
        return None
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM and IP_BIND_ADDRESS_NO_PORT is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _resolved(loop, host, port, kind):
    infos = await loop.getaddrinfo(host, port, type=kind)
    return infos[0][4]


def open_connection(loop, protocol_factory, host, port, tls=None, server_hostname=None):
    """Connect to (host, port) from the pool's next source address (when there is a pool),
    over TLS with the context ``tls`` (for ``server_hostname``, else ``host``) when given;
    await what it returns, ``(transport, protocol)``. Plain TCP without a pool is the loop's
    own awaitable, with no coroutine of ours around it: a connect storm of many devices
    holds one object less per device."""
    if tls is not None:
        return open_tls(lambda factory: _open_tcp(loop, factory, host, port), protocol_factory, loop, tls,
                        server_hostname or host)
    return _open_tcp(loop, protocol_factory, host, port)


def _open_tcp(loop, protocol_factory, host, port):
    if not _pool:
        return loop.create_connection(protocol_factory, host, port)
    return _connect_from_pool(loop, protocol_factory, host, port)


async def _connect_from_pool(loop, protocol_factory, host, port):
    target = await _resolved(loop, host, port, socket.SOCK_STREAM)
    sock = bound_socket(socket.SOCK_STREAM, target[0])
    if sock is None:
        return await loop.create_connection(protocol_factory, host, port)
    try:
        await loop.sock_connect(sock, target)
        return await loop.create_connection(protocol_factory, sock=sock)
    except BaseException:
        sock.close()
        raise


async def open_datagram(loop, protocol_factory, host, port):
    """``loop.create_datagram_endpoint`` connected to (host, port), from the pool's next address."""
    if _pool:
        target = await _resolved(loop, host, port, socket.SOCK_DGRAM)
        sock = bound_socket(socket.SOCK_DGRAM, target[0])
        if sock is not None:
            try:
                sock.connect(target)
                return await loop.create_datagram_endpoint(protocol_factory, sock=sock)
            except BaseException:
                sock.close()
                raise
    return await loop.create_datagram_endpoint(protocol_factory, remote_addr=(host, port))
