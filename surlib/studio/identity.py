"""Who a voter is, decided by the server: a Hugging Face account when one is signed in, else the
client's network address.

Gradio's `session_hash` is chosen by the client (a new `gradio_client.Client()` or a rewritten
hash is a new "session"), so it decides nothing here. What a client cannot choose:

* **its address** — the TCP peer of the request (`request.client.host`). An `X-Forwarded-For`
  header is read only when the peer is a trusted proxy (`ProxyTrust`): by address/CIDR, or "the
  last N hops are ours" (a platform whose proxy fronts every request, as on Hugging Face Spaces).
  Entries are read from the right, each one appended by a proxy we trust, and the first entry not
  vouched for is the client; whatever a client writes into the header itself sits to the left of
  that and is never reached.
* **its account** — with Hugging Face OAuth (`gr.LoginButton`), the signed-in username; it wins
  over the address, so people behind one NAT can be told apart by signing in.

IPv6 clients are keyed by their /64 network: one subscriber gets a whole /64 and picks addresses
in it at will (privacy extensions), so a full address would be a free new voter per request.

The identity never leaves the server in clear: `Voter.key` is sha256(salt:identity), the value
the vote store keys rate limits, pair ownership and "your votes" on.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any, Sequence

IPV6_PREFIX = 64
MAX_HOPS = 16


class TrustError(ValueError):
    """A trusted-proxy setting the server cannot use (the message names the setting)."""


@dataclass(frozen=True)
class ProxyTrust:
    """Which peers may speak for the client in `X-Forwarded-For`.

    `hops`: the last `hops` addresses of the chain (the peer, then header entries from the
    right) are proxies of the deployment. `networks`: a peer or entry inside one of them is a
    proxy. Both empty: the header is ignored."""

    networks: tuple = ()
    hops: int = 0

    @classmethod
    def parse(cls, text: str | None, setting: str = "SUR_TRUSTED_PROXIES") -> "ProxyTrust":
        """"" → trust nobody; "2" → two hops; "10.0.0.0/8, 127.0.0.1" → those networks."""
        text = (text or "").strip()
        if not text:
            return cls()
        if text.isdigit():
            hops = int(text)
            if not 0 <= hops <= MAX_HOPS:
                raise TrustError(f"{setting} as a hop count must be between 0 and {MAX_HOPS}, got {hops}")
            return cls(hops=hops)
        nets = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise TrustError(f"{setting} must be a hop count or a comma list of IP addresses/CIDR "
                                 f"networks; {part!r} is neither") from None
        return cls(networks=tuple(nets))

    @property
    def enabled(self) -> bool:
        return bool(self.networks or self.hops)

    def _is_proxy(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip.version == n.version and ip in n for n in self.networks)

    def client_address(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str | None:
        """The client's address from the TCP peer and the X-Forwarded-For values (all header
        lines, in order); the peer itself when the header is absent or not trusted."""
        if not self.enabled or not forwarded_for:
            return peer
        entries = [e.strip() for line in forwarded_for for e in str(line).split(",") if e.strip()]
        chain = entries + ([peer] if peer else [])
        if not chain:
            return peer
        if self.hops:
            # the last `hops` links are ours; the one before them is the client
            return chain[max(0, len(chain) - 1 - self.hops)]
        i = len(chain) - 1
        if not self._is_proxy(chain[i]):
            return chain[i]  # the peer is not a proxy we know: its header means nothing
        while i > 0 and self._is_proxy(chain[i]):
            i -= 1
        return chain[i]


def _ip(address: str | None):
    """`address` as an ipaddress object (IPv4-mapped IPv6 as IPv4; "[::1]:80" and "1.2.3.4:80"
    without the port), or None when it is not an IP address."""
    if not address:
        return None
    text = address.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_identity(address: str | None) -> str:
    """"ip:<IPv4>" or "ip:<IPv6 /64 network>"; anything unparsable kept as text (bounded)."""
    ip = _ip(address)
    if ip is None:
        return f"addr:{(address or 'unknown')[:100]}"
    if ip.version == 6:
        return f"ip:{ipaddress.ip_network(f'{ip}/{IPV6_PREFIX}', strict=False)}"
    return f"ip:{ip}"


def voter_key(identity: str, salt: str) -> str:
    """sha256 of the server salt and the voter's identity; the identity itself is never stored."""
    return hashlib.sha256(f"{salt}:{identity}".encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Voter:
    """One voter as the server sees it. `key` is what the store keeps; `kind` says how it was
    decided ("account" or "address"), for the page."""

    key: str
    kind: str
    label: str  # shown to the voter: their username, or "your network address"


def oauth_username(profile: Any) -> str | None:
    """The Hugging Face username of a `gr.OAuthProfile` (None when signed out)."""
    if profile is None:
        return None
    name = getattr(profile, "username", None)
    if name is None and isinstance(profile, dict):
        name = profile.get("preferred_username")
    return str(name) if name else None


class VoterResolver:
    """`voter(request, profile)`: the signed-in account if any (OAuth, or Gradio's own `auth`),
    else the client address under `trust`."""

    def __init__(self, salt: str, trust: ProxyTrust | None = None):
        self._salt = salt
        self.trust = trust or ProxyTrust()

    def address(self, request: Any) -> str | None:
        client = getattr(request, "client", None)
        peer = getattr(client, "host", None)
        headers = getattr(request, "headers", None)
        forwarded: list[str] = []
        if headers is not None:
            getlist = getattr(headers, "getlist", None)
            forwarded = list(getlist("x-forwarded-for")) if callable(getlist) else \
                [v for v in [headers.get("x-forwarded-for")] if v]
        return self.trust.client_address(peer, forwarded)

    def voter(self, request: Any, profile: Any = None) -> Voter:
        user = oauth_username(profile)
        if user:
            return Voter(voter_key(f"hf:{user}", self._salt), "account", user)
        username = getattr(request, "username", None) if request is not None else None
        if username:  # launch(auth=...) accounts
            return Voter(voter_key(f"user:{username}", self._salt), "account", str(username))
        identity = address_identity(self.address(request) if request is not None else None)
        return Voter(voter_key(identity, self._salt), "address", "your network address")


__all__ = ["ProxyTrust", "TrustError", "Voter", "VoterResolver", "address_identity", "voter_key",
           "oauth_username", "IPV6_PREFIX"]
