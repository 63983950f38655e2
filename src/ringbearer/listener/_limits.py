"""Per-client request rates on the public listener, in bounded memory.

Each client address gets a token bucket (the same one that paces calls to
providers), and each request it makes that is refused (forged, stale, a bad
token, an unknown path, too large) takes a token; once its bucket is empty,
everything it sends is answered 429 until the bucket refills. A delivery that
verifies takes none: a provider's burst of real events (a thousand a second
from one address when a campaign lands) is never throttled, and a retry storm
of 429s cannot starve the daemon of the very events it waits for. What bounds
verified traffic is the connection limit, and it needs the provider's secret.

The table of buckets is bounded: past ``capacity`` clients the one seen
longest ago is forgotten. A forgotten client starts again with a
full bucket, which costs at most one burst per eviction, while a flood from
many addresses can no longer grow the table without end.

Behind the operator's proxy every connection comes from the proxy, so the
client is read from ``X-Forwarded-For`` when, and only when, the connection
comes from a proxy the operator named: the client is the right-most address
not itself a trusted proxy (entries further left are the client's to forge).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable

import attrs
import trio

from ..resilience._ratelimit import RateLimitSettings, TokenBucket

DEFAULT_CAPACITY = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.define
class ClientLimiter:
    """Admits a client's requests while its bucket has a token; its refusals take them."""

    settings: RateLimitSettings
    clock: Callable[[], float] = trio.current_time
    capacity: int = DEFAULT_CAPACITY
    _buckets: OrderedDict[str, TokenBucket] = attrs.field(init=False, factory=OrderedDict)

    def admit(self, client: str) -> float | None:
        """None to go ahead; else the seconds (at least one) to tell the client to wait."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return None  # never refused yet: a full bucket
        self._buckets.move_to_end(client)
        wait = bucket.wait_time()
        return None if wait <= 0.0 else float(max(1, math.ceil(wait)))

    def refused(self, client: str) -> None:
        """One of the client's requests was refused: it takes a token."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = TokenBucket(self.settings, self.clock)
            self._buckets[client] = bucket
            while len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        bucket.try_take()

    def __len__(self) -> int:
        return len(self._buckets)


@attrs.frozen
class Proxies:
    """The operator's proxies, whose ``X-Forwarded-For`` is believed."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[str]) -> Proxies:
        """From addresses or networks (``10.0.0.0/8``); ValueError for one that is neither."""
        return cls(tuple(ipaddress.ip_network(entry, strict=False) for entry in entries))

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client a request is from: the peer, unless the peer is a trusted proxy."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer
