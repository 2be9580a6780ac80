"""What a client's address counts as, wherever connections, failed passwords, registrations
or an unregistered sender's history are counted per address.

An IPv4 address is itself. An IPv6 one counts as its /64: a host, or a whole home or office
network, is given a /64 at least and may take any address in it, so counting each address
alone would let one client spread itself over as many counters as it likes. An IPv4 client
of a dual-stack listener (``--host ::``) arrives as an IPv4-mapped IPv6 address: it counts as
the IPv4 address it is, loopback included (else every IPv4 client would share ::ffff:0:0/64,
and 127.0.0.1 would not be loopback). ::1 is loopback, and itself.
"""

import functools
import ipaddress

IPV6_PREFIX = 64


@functools.lru_cache(maxsize=4096)
def counted_address(host: str) -> str:
    """host as it is counted: an IPv4 address, ::1, an IPv6 /64 ("2001:db8::/64"), or host
    itself where it is not an IP address (a Unix socket's, a test's made-up one)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 4:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if address.is_loopback:
        return str(address)
    return str(ipaddress.ip_network((address, IPV6_PREFIX), strict=False))


@functools.lru_cache(maxsize=4096)
def is_loopback(counted: str) -> bool:
    """Whether a counted address is a loopback one (127.0.0.0/8 or ::1). (Asked at every
    accept: parsed once per address, as counted_address is.)"""
    try:
        return ipaddress.ip_address(counted).is_loopback
    except ValueError:
        return False
