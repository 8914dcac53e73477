"""Fetching skill image URLs without becoming a proxy into the private network (SSRF).

Azure AI Search may send image URLs instead of bytes. Fetching them is off unless enabled;
when on, every fetch:

- accepts http and https only, and only the configured hosts when a host list is set;
- resolves the host itself and refuses it when any address is loopback, link-local (cloud
  metadata at 169.254.169.254), private, shared, multicast, reserved or unspecified, or an IPv6
  address that carries or reaches an IPv4 one (6to4 2002::/16, NAT64 64:ff9b::/96 and
  64:ff9b:1::/48, IPv4-mapped) or is site-local (fec0::/10), unless the address is inside a
  network the operator allowed explicitly;
- connects to the address it checked (the URL is rewritten to it, with the original Host
  header and TLS server name), so a second DNS answer cannot point the connection elsewhere;
- follows no redirects, stops at the byte limit, and ends at one total deadline;
- waits for one of a fixed number of fetch slots, so a request of 1000 records cannot open
  1000 connections.

Every failure a remote party could cause reads the same to the caller (the reason is logged),
an image over the size limit included, so the fetcher cannot be used to map which internal
addresses answer, or how. A URL that cannot be parsed is the caller's own 400.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from visiondock.errors import InvalidInput

from .settings import ScoringSettings

log = logging.getLogger(__name__)

FETCH_FAILED = "could not fetch the image URL"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses it resolves to; the event loop's getaddrinfo by default.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class FetchRefusedError(Exception):
    """Why a fetch was refused or failed; logged, never shown to the caller."""


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# IPv6 networks `is_global` counts as public that lead to other addresses: 6to4 (2002::/16) and NAT64
# (64:ff9b::/96, 64:ff9b:1::/48) carry an IPv4 address a relay or gateway would reach.
_NOT_PUBLIC_V6 = tuple(ipaddress.ip_network(n) for n in ("2002::/16", "64:ff9b::/96", "64:ff9b:1::/48"))


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.is_site_local or any(address in network for network in _NOT_PUBLIC_V6):
            return False
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


class GuardedFetcher:
    """Fetches image URLs for skill records within the rules in the module docstring."""

    def __init__(self, settings: ScoringSettings, *, resolver: Resolver = resolve) -> None:
        self.enabled = settings.scoring_skill_fetch_urls
        self.hosts = set(settings.scoring_skill_url_hosts)
        self.allowed_networks: Sequence[Network] = [
            ipaddress.ip_network(n, strict=False) for n in settings.scoring_skill_fetch_allowed_networks]
        self.max_bytes = settings.scoring_max_body_bytes
        self.deadline = settings.scoring_fetch_timeout_seconds
        self._slots = asyncio.Semaphore(settings.scoring_skill_fetch_concurrency)
        self._resolve = resolver
        self._client = httpx.AsyncClient(timeout=self.deadline, follow_redirects=False, trust_env=False)

    async def close(self) -> None:
        await self._client.aclose()

    def allowed(self, address: IPAddress) -> bool:
        return is_public(address) or any(address in network for network in self.allowed_networks)

    async def fetch(self, url: str) -> bytes:
        if not self.enabled:
            raise InvalidInput("this service does not fetch image URLs; send the image bytes as base64 "
                               "(or enable VISIONDOCK_SCORING_SKILL_FETCH_URLS)")
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError:  # e.g. an IPv6 address without its closing bracket
            raise InvalidInput(f"cannot fetch {url[:200]!r}: not a valid URL") from None
        if parts.scheme not in ("http", "https") or not hostname:
            raise InvalidInput(f"cannot fetch {url[:200]!r}: only http and https URLs")
        host = hostname.lower()
        if self.hosts and host not in self.hosts:
            raise InvalidInput(f"fetching from {host} is not allowed; allowed hosts: {', '.join(sorted(self.hosts))}")
        try:
            async with asyncio.timeout(self.deadline), self._slots:
                return await self._fetch_checked(host, parts)
        except (FetchRefusedError, httpx.HTTPError, OSError, TimeoutError, ValueError) as exc:
            log.info("skill URL fetch refused or failed for host %s: %s", host[:100],
                     str(exc) or type(exc).__name__)
            raise InvalidInput(FETCH_FAILED) from None

    async def _fetch_checked(self, host: str, split: SplitResult) -> bytes:
        scheme = split.scheme
        port = split.port or (443 if scheme == "https" else 80)
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in await self._resolve(host, port)]
        if not addresses:
            raise FetchRefusedError("the host resolved to no address")
        refused = [str(a) for a in addresses if not self.allowed(a)]
        if refused:
            raise FetchRefusedError(f"the host resolves to a non-public address ({', '.join(refused)})")
        address = addresses[0]
        literal = f"[{address}]" if address.version == 6 else str(address)
        pinned = urlunsplit((scheme, f"{literal}:{port}", split.path or "/", split.query, ""))
        host_header = host if split.port is None else f"{host}:{split.port}"
        extensions = {"sni_hostname": host} if scheme == "https" else {}
        request = self._client.build_request("GET", pinned, headers={"Host": host_header}, extensions=extensions)
        response = await self._client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise FetchRefusedError(f"answered {response.status_code}")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:  # said like any other failure: no probing of what answers how
                    raise FetchRefusedError(f"the answer is over the {self.max_bytes:,}-byte limit")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            await response.aclose()
