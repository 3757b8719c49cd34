"""Which IP addresses an image fetch may reach: public ones only, unless allowlisted.

``classify_address`` names what a non-public address is (loopback, private, link-local,
cloud metadata, CGNAT, reserved...), looking inside IPv4-mapped, 6to4 and NAT64 IPv6.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST = re.compile(r"[A-Za-z0-9._-]+")

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


def classify_address(address: str | IPAddress) -> str | None:
    """None for a public address, else what it is ("a loopback address", ...)."""
    address = ipaddress.ip_address(address) if isinstance(address, str) else address
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = classify_address(inner)
        return f"{reason} ({inner} inside IPv6)" if reason else None
    if address.is_unspecified or address in _THIS_NETWORK:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address in _METADATA:
        return "a link-local address (cloud metadata service)"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _CGNAT:
        return "a shared (CGNAT) address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if address.version == 6 and address.is_site_local:
        return "a site-local address"
    if not address.is_global:
        return "a non-public address"
    return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 (64:ff9b::/96) IPv6 address."""
    if address.version == 4:
        return None
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.ipv4_mapped if address.ipv4_mapped is not None else address.sixtofour


def normal_host(host: str) -> str:
    """A host name as compared and connected to: lower case, no trailing dot, IDNA, IPv6 without zone."""
    host = host.strip().rstrip(".").lower()
    if ":" in host:
        return str(ipaddress.IPv6Address(host.split("%", 1)[0]))
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"bad host name {host!r}") from None
    if not _HOST.fullmatch(host):
        raise ValueError(f"bad host name {host!r}")
    return host
