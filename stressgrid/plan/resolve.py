"""Resolving target hosts: every address a host has is used, round-robin."""
import ipaddress
import socket

from .model import Address, PlanError


def resolve_addresses(addresses):
    """Expand each address to one per resolved IP (IPv4 and IPv6, de-duplicated).

    Raises ``PlanError`` naming the address whose host does not resolve.
    """
    result = []
    for i, address in enumerate(addresses):
        if address.ip:
            result.append(address)
            continue
        try:
            ipaddress.ip_address(address.host)
            result.append(Address(address.host, address.port, address.protocol, address.host))
            continue
        except ValueError:
            pass
        kind = socket.SOCK_DGRAM if address.protocol == "udp" else socket.SOCK_STREAM
        try:
            infos = socket.getaddrinfo(address.host, address.port, type=kind)
        except (socket.gaierror, UnicodeError) as exc:
            raise PlanError(f"addresses[{i}].host", f"{address.host!r} does not resolve ({exc})") from None
        seen = []
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in seen:
                seen.append(sockaddr[0])
        if not seen:
            raise PlanError(f"addresses[{i}].host", f"{address.host!r} has no IP address")
        result.extend(Address(address.host, address.port, address.protocol, ip) for ip in seen)
    return result
