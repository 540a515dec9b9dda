"""Which addresses a function may reach on a caller's behalf.

These functions run inside a VPC: a videoSrc or Callback that resolves to a loopback, private,
link-local or cloud-metadata address would let a caller probe the network behind it. Such
destinations are refused unless an allowlist in the environment opens them:

- SOURCE_ALLOWLIST   for push_stream's videoSrc
- CALLBACK_ALLOWLIST for record_stream's Callback

Each is a comma-separated list of CIDRs ("127.0.0.0/8"), addresses or host names. The emulator sets
both to loopback for its own functions.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

SOURCE_ALLOWLIST_ENV = "SOURCE_ALLOWLIST"
CALLBACK_ALLOWLIST_ENV = "CALLBACK_ALLOWLIST"

# Cloud metadata services (Tencent Cloud's, and the common 169.254.169.254).
METADATA_HOSTS = frozenset({"metadata.tencentyun.com", "metadata.google.internal"})
METADATA_NETS = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("100.100.100.200/32"))


class DestinationRefused(ValueError):
    """The destination is not allowed; the message names it and why."""


def _allowlist(env_name: str) -> tuple[list[ipaddress._BaseNetwork], set[str]]:
    nets: list[ipaddress._BaseNetwork] = []
    hosts: set[str] = set()
    for item in (os.environ.get(env_name) or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower())
    return nets, hosts


def _why_internal(addr: ipaddress._BaseAddress) -> str | None:
    if any(addr in net for net in METADATA_NETS):
        return "a cloud metadata address"
    if addr.is_loopback:
        return "a loopback address"
    if addr.is_link_local:
        return "a link-local address"
    if addr.is_private or addr.is_reserved or addr.is_unspecified or addr.is_multicast:
        return "a private address"
    if isinstance(addr, ipaddress.IPv4Address) and addr in ipaddress.ip_network("100.64.0.0/10"):
        return "a private address"  # carrier-grade NAT: Tencent Cloud's internal services live here
    return None


def check_destination(url: str, allowlist_env: str, what: str, resolve: bool = True) -> None:
    """Raise DestinationRefused if `url`'s host is internal and not allowlisted. Local paths pass."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file") or (len(parts.scheme) == 1 and url[1:3] in (":\\", ":/")):
        return  # a local file: nothing leaves the machine
    host = (parts.hostname or "").lower()
    if not host:
        raise DestinationRefused(f"{what} {url!r} has no host")
    nets, hosts = _allowlist(allowlist_env)
    if host in hosts:
        return
    if host in METADATA_HOSTS:
        raise DestinationRefused(f"{what} host {host} is a cloud metadata service; set {allowlist_env} to allow it")
    try:
        addrs = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return
        if host == "invalid" or host.endswith(".invalid"):
            # RFC 6761: such names never resolve; don't ask a resolver.
            raise DestinationRefused(f"{what} host {host} does not resolve: reserved .invalid name") from None
        try:
            infos = socket.getaddrinfo(host, parts.port or 80, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise DestinationRefused(f"{what} host {host} does not resolve: {e}") from None
        addrs = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for addr in addrs:
        if any(addr in net for net in nets):
            continue
        why = _why_internal(addr)
        if why:
            shown = host if str(addr) == host else f"{host} ({addr})"
            raise DestinationRefused(
                f"{what} host {shown} is {why}, refused inside a VPC; set {allowlist_env} to allow it")


def validate_callback_url(url: str, resolve: bool = True) -> str:
    """The URL if a callback may go there; else DestinationRefused (a ValueError) saying why."""
    if not isinstance(url, str) or not url.strip():
        raise DestinationRefused("Callback must be an http or https URL")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused(f"Callback {url!r} must be an http or https URL with a host")
    check_destination(url, CALLBACK_ALLOWLIST_ENV, "Callback", resolve=resolve)
    return url
