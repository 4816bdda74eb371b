"""SSRF-hardened download of CA-issuer certificates named in an AIA extension.

Azure's attested-data envelope usually carries only the signing certificate;
its issuing CA is rotated by Microsoft and can be fetched from the leaf's
Authority Information Access "CA Issuers" URL. That URL is attacker-chosen
(any certificate can name any URL), so fetching it is a server-side request
forgery primitive unless tightly fenced. The fence here:

* scheme ``http``/``https`` only, no userinfo, port 80 or 443 only;
* host must be on an allow-list (default ``www.microsoft.com`` and
  ``cacerts.digicert.com``, the two hosts Microsoft's and DigiCert's issuing
  CAs publish under);
* the host is resolved once, *every* address is checked against the
  non-public ranges below, and the connection goes to the checked address
  (so a second DNS answer cannot rebind it to an internal host);
* no redirects are followed, 5 s socket timeout and an overall deadline,
  1 MiB body cap, and the body must parse as one DER certificate. Parse
  errors do not echo the body.

Stdlib only (``socket``, ``ssl``, ``http.client``).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Collection, Sequence
from urllib.parse import urlsplit

from cryptography import x509

__all__ = [
    "DEFAULT_ALLOWED_HOSTS",
    "DEFAULT_ALLOWED_PORTS",
    "FetchFailed",
    "FetchRefused",
    "check_url",
    "fetch_ca_issuer",
    "is_forbidden_address",
]

DEFAULT_ALLOWED_HOSTS: frozenset[str] = frozenset({"www.microsoft.com", "cacerts.digicert.com"})
DEFAULT_ALLOWED_PORTS: frozenset[int] = frozenset({80, 443})
DEFAULT_TIMEOUT = 5.0
MAX_BODY_BYTES = 1024 * 1024

_REQUEST_HEADERS = {"Accept": "application/pkix-cert", "Connection": "close"}

Resolver = Callable[[str, int], Sequence[str]]

# Ranges that are not covered (or not reliably covered across Python
# versions) by ipaddress's is_private/is_global flags, or that can embed an
# internal IPv4 address inside an IPv6 one.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "240.0.0.0/4",  # reserved, includes broadcast
        "64:ff9b::/96",  # NAT64: would reach any IPv4 address, internal ones too
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, ...)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: embeds an IPv4 address
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
    )
)


class FetchRefused(Exception):
    """The URL or the address it resolves to is outside the allowed fence."""


class FetchFailed(Exception):
    """The request was allowed but did not yield a certificate."""


def is_forbidden_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for anything that is not a plain public unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # ::ffff:169.254.169.254 must be judged as the IPv4 address it is.
        ip = ip.ipv4_mapped
    if (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    ):
        return True
    return any(ip.version == net.version and ip in net for net in _EXTRA_BLOCKED)


def check_url(
    url: str,
    *,
    allowed_hosts: Collection[str] = DEFAULT_ALLOWED_HOSTS,
    allowed_ports: Collection[int] = DEFAULT_ALLOWED_PORTS,
) -> tuple[str, str, int, str]:
    """Validate an AIA URL without touching the network -> (scheme, host, port, path)."""
    if not isinstance(url, str) or len(url) > 2048:
        raise FetchRefused("URL is not a string of sane length")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise FetchRefused("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchRefused("URL cannot be parsed") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused("URL scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("URL must not carry credentials")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host or host not in {h.lower() for h in allowed_hosts}:
        raise FetchRefused("URL host is not on the allow-list")
    if port is None:
        port = 443 if scheme == "https" else 80
    if port not in allowed_ports:
        raise FetchRefused("URL port is not allowed")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, host, port, path


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) connection to an already-vetted IP, keeping Host/SNI as the name."""

    def __init__(self, host: str, port: int, ip: str, timeout: float, tls: ssl.SSLContext | None):
        super().__init__(host, port, timeout=timeout)
        self._ip = ip
        self._tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), timeout=self.timeout)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock


def fetch_ca_issuer(
    url: str,
    *,
    allowed_hosts: Collection[str] = DEFAULT_ALLOWED_HOSTS,
    allowed_ports: Collection[int] = DEFAULT_ALLOWED_PORTS,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = MAX_BODY_BYTES,
    resolver: Resolver = _system_resolver,
    address_filter: Callable[[str], bool] = is_forbidden_address,
) -> x509.Certificate:
    """Download one DER certificate from an AIA CA-issuers URL, or raise.

    ``resolver`` and ``address_filter`` exist so tests can stay on loopback;
    production callers should leave them alone.
    Raises ``FetchRefused`` (fence violated, nothing was sent) or
    ``FetchFailed`` (transport, HTTP status, size or parse problem).
    """
    scheme, host, port, path = check_url(
        url, allowed_hosts=allowed_hosts, allowed_ports=allowed_ports
    )
    try:
        addresses = list(resolver(host, port))
    except (OSError, UnicodeError) as exc:
        raise FetchFailed("cannot resolve host") from exc
    if not addresses:
        raise FetchFailed("host has no addresses")
    # One bad answer poisons the lot: a resolver mixing public and internal
    # addresses is exactly what a rebinding attacker would serve.
    if any(address_filter(addr) for addr in addresses):
        raise FetchRefused("host resolves to a non-public address")

    tls = ssl.create_default_context() if scheme == "https" else None
    deadline = time.monotonic() + timeout
    conn = _PinnedConnection(host, port, addresses[0], timeout, tls)
    try:
        conn.request("GET", path, headers=_REQUEST_HEADERS)
        resp = conn.getresponse()
        if resp.status != 200:
            raise FetchFailed(f"unexpected HTTP status {resp.status}")
        length = resp.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise FetchFailed("response body too large")
        body = bytearray()
        while True:
            if time.monotonic() > deadline:
                raise FetchFailed("download took too long")
            chunk = resp.read(min(64 * 1024, max_bytes + 1 - len(body)))
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                raise FetchFailed("response body too large")
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        raise FetchFailed("transport error") from exc
    finally:
        conn.close()
    try:
        return x509.load_der_x509_certificate(bytes(body))
    except ValueError:
        # No "from exc": the parse error can quote the body, which is
        # attacker-controlled content from a third-party host.
        raise FetchFailed("response is not a DER certificate") from None
