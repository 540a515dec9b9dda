"""Where a function may connect, and the one way it connects there.

These functions run inside a VPC: a videoSrc, Callback or Redis address that resolves to a
loopback, private, link-local or cloud-metadata address would let a caller probe the network behind
it. Such destinations are refused unless an allowlist in the environment opens them:

- SOURCE_ALLOWLIST   for push_stream's videoSrc (every redirect hop, HLS playlist, key and segment)
- REDIS_ALLOWLIST    for push_stream's Redis (redisHost/redisPort)
- CALLBACK_ALLOWLIST for record_stream's Callback
- ASR_ALLOWLIST      for recognize_stream's speech recognition endpoint (ASR_ENDPOINT)

Each is a comma-separated list of CIDRs ("127.0.0.0/8"), addresses or host names. The emulator sets
them to loopback for its own functions.

The rule is enforced where a connection is made, not only when a URL arrives: `connect()` resolves a
name once, checks every address it got, and connects to one of those addresses, so a DNS answer that
changes between a check and a connect (DNS rebinding) cannot lead anywhere the rule refuses.

Local files (videoSrc as a path or file://) are read only under the directories LOCAL_SOURCE_DIRS
names (`check_local_path`): the functions share a file system with other callers' recordings.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.settings import settings

SOURCE_ALLOWLIST_ENV = "SOURCE_ALLOWLIST"
CALLBACK_ALLOWLIST_ENV = "CALLBACK_ALLOWLIST"
REDIS_ALLOWLIST_ENV = "REDIS_ALLOWLIST"
ASR_ALLOWLIST_ENV = "ASR_ALLOWLIST"
LOCAL_SOURCE_DIRS_ENV = "LOCAL_SOURCE_DIRS"

# Cloud metadata services (Tencent Cloud's, and the common 169.254.169.254).
METADATA_HOSTS = frozenset({"metadata.tencentyun.com", "metadata.google.internal"})
METADATA_NETS = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("100.100.100.200/32"))


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationRefused(ValueError):
    """The destination is not allowed; the message names it and why."""


class HostDoesNotResolve(DestinationRefused):
    """The host name has no address (nothing to connect to, so nothing was checked either)."""


@dataclass(frozen=True)
class Address:
    """One checked address of a host: connect to exactly this."""

    family: int
    sockaddr: tuple[Any, ...]

    @property
    def ip(self) -> str:
        return str(self.sockaddr[0])


def _allowlist(env_name: str) -> tuple[list[IPNetwork], set[str]]:
    nets: list[IPNetwork] = []
    hosts: set[str] = set()
    for item in getattr(settings(), env_name.lower()):  # the variable's validated value
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower())
    return nets, hosts


def _why_internal(addr: IPAddress) -> str | None:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
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


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


def _refuse_by_name(host: str, allowlist_env: str, what: str) -> bool:
    """True when the allowlist names `host` itself; raises for names that are refused as names."""
    if host in _allowlist(allowlist_env)[1]:
        return True
    if host in METADATA_HOSTS:
        raise DestinationRefused(f"{what} host {host} is a cloud metadata service; set {allowlist_env} to allow it")
    if host == "invalid" or host.endswith(".invalid"):
        # RFC 6761: such names never resolve; don't ask a resolver.
        raise HostDoesNotResolve(f"{what} host {host} does not resolve: reserved .invalid name")
    return False


def _check_addresses(host: str, ips: list[IPAddress], allowlist_env: str, what: str) -> None:
    nets, _ = _allowlist(allowlist_env)
    for addr in ips:
        if any(addr in net for net in nets):
            continue
        why = _why_internal(addr)
        if why:
            shown = host if str(addr) == host else f"{host} ({addr})"
            raise DestinationRefused(
                f"{what} host {shown} is {why}, refused inside a VPC; set {allowlist_env} to allow it")


def resolve_checked(host: str, port: int, allowlist_env: str, what: str) -> list[Address]:
    """Resolve `host` once and check every address it has; the addresses a connection may use.

    Raises DestinationRefused (HostDoesNotResolve when there is no address). A name the allowlist
    lists itself is trusted whatever it resolves to.
    """
    host = (host or "").strip().strip("[]").lower()
    if not host:
        raise DestinationRefused(f"{what} has no host")
    trusted = _refuse_by_name(host, allowlist_env, what)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise HostDoesNotResolve(f"{what} host {host} does not resolve: {e}") from None
    addresses = [Address(family, tuple(sockaddr)) for family, _, _, _, sockaddr in infos]
    if not addresses:
        raise HostDoesNotResolve(f"{what} host {host} does not resolve")
    if not trusted:
        _check_addresses(host, [ipaddress.ip_address(a.ip.split("%")[0]) for a in addresses], allowlist_env, what)
    return addresses


def connect(host: str, port: int, allowlist_env: str, what: str, timeout: float | None) -> socket.socket:
    """A TCP socket to `host`:`port`, connected only to an address the rule allows.

    The name is resolved once (`resolve_checked`), and the connection goes to those checked addresses in
    turn: nothing resolves it again between the check and the connect. Raises DestinationRefused,
    or OSError (socket.timeout included) when no checked address accepts the connection.
    """
    last: OSError | None = None
    for address in resolve_checked(host, port, allowlist_env, what):
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(address.sockaddr)
            return sock
        except OSError as e:
            sock.close()
            last = e
    assert last is not None
    raise last


def check_destination(url: str, allowlist_env: str, what: str, resolve: bool = True) -> None:
    """Raise DestinationRefused if `url`'s host is internal and not allowlisted. Local paths pass.

    An early answer for a URL a caller gave; the connection itself is checked again by `connect`.
    """
    parts = urlsplit(url)
    if parts.scheme in ("", "file") or (len(parts.scheme) == 1 and url[1:3] in (":\\", ":/")):
        return  # a local file: nothing leaves the machine (check_local_path decides where it may be)
    host = (parts.hostname or "").lower()
    if not host:
        raise DestinationRefused(f"{what} {url!r} has no host")
    if _refuse_by_name(host, allowlist_env, what):
        return  # the allowlist names it
    literal = _literal(host)
    if literal is not None:
        _check_addresses(host, [literal], allowlist_env, what)
    elif resolve:
        resolve_checked(host, parts.port or 80, allowlist_env, what)


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


# --- local files -----------------------------------------------------------------------------------


def local_source_dirs() -> list[str]:
    """The directories LOCAL_SOURCE_DIRS names (comma- or os.pathsep-separated), symlinks resolved."""
    return [os.path.realpath(p) for p in settings().local_source_dirs]


def check_local_path(path: str) -> str:
    """The real path of `path` (symlinks resolved) if it lies under a LOCAL_SOURCE_DIRS directory.

    Otherwise DestinationRefused whose message is the reason alone (the caller names the source).
    Checked before anything is read, so the answer never tells whether a refused file exists.
    """
    real = os.path.realpath(path)
    dirs = local_source_dirs()
    if not dirs:
        raise DestinationRefused(f"local files are refused: {LOCAL_SOURCE_DIRS_ENV} names no directory")
    for d in dirs:
        if real == d or real.startswith(d.rstrip(os.sep) + os.sep):
            return real
    raise DestinationRefused(f"local files are read only under the directories {LOCAL_SOURCE_DIRS_ENV} "
                             f"names, and this one is not under any of them")


# --- HTTP through requests ---------------------------------------------------------------------------


def pinned_session(allowlist_env: str, what: str) -> Any:
    """A requests.Session whose every connection is made by `connect` (resolve once, check, connect
    to that address). TLS still verifies and sends SNI for the URL's host name, and Host stays the
    name. Environment proxies and .netrc are ignored: a proxy would be the address checked, not
    the destination. A refused destination raises DestinationRefused out of the request.
    """
    import requests

    session = requests.Session()
    session.trust_env = False
    adapter = _pinned_adapter_class()(allowlist_env, what)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_ADAPTER: Any = None


def _pinned_adapter_class() -> Any:
    """Built on first use, so that importing this module does not import requests."""
    global _ADAPTER
    if _ADAPTER is not None:
        return _ADAPTER
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    def pinned_new_conn(self: Any) -> socket.socket:
        timeout = self.timeout if isinstance(self.timeout, (int, float)) else socket.getdefaulttimeout()
        try:
            return connect(self._dns_host, self.port, self.egress_rule[0], self.egress_rule[1], timeout)
        except socket.timeout as e:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. (connect timeout={timeout})") from e
        except DestinationRefused:
            raise
        except OSError as e:
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e

    class PinnedHTTPConnection(HTTPConnection):
        egress_rule: tuple[str, str]
        _new_conn = pinned_new_conn

    class PinnedHTTPSConnection(HTTPSConnection):
        egress_rule: tuple[str, str]
        _new_conn = pinned_new_conn

    class PinnedAdapter(HTTPAdapter):
        def __init__(self, allowlist_env: str, what: str) -> None:
            rule = (allowlist_env, what)
            # Pool and connection classes of this adapter's own, carrying its rule.
            self._pools = {
                "http": type("PinnedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": type(
                    "PinnedHTTPConnection", (PinnedHTTPConnection,), {"egress_rule": rule})}),
                "https": type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": type(
                    "PinnedHTTPSConnection", (PinnedHTTPSConnection,), {"egress_rule": rule})}),
            }
            super().__init__()

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = self._pools

        def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
            raise DestinationRefused("a proxy cannot be used: the destination's own address is what is checked")

    _ADAPTER = PinnedAdapter
    return _ADAPTER
