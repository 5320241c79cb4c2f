"""A service registry: instances announce themselves under
``<prefix><service>/<instance>`` with a lease they keep alive; an instance
that dies disappears when its TTL runs out.  Readers list the instances of
a service and follow changes with blocking reads."""

from __future__ import annotations

from typing import Callable

from metastore.recipes.client import RestClient
from metastore.recipes.keepalive import KeepAlive

class ServiceRegistry:
    """Registering and finding service instances through ``client``."""

    def __init__(self, client: RestClient, clock, prefix: str = "services/") -> None:
        self.client, self.prefix = client, prefix
        self._clock = clock
        self._alive: dict[str, KeepAlive] = {}

    def _key(self, service: str, instance: str) -> str:
        return f"{self.prefix}{service}/{instance}"

    async def register(self, service: str, instance: str, address: str, ttl: int = 10) -> None:
        """Announce ``instance`` of ``service`` at ``address`` and keep it alive."""
        key = self._key(service, instance)
        await self.client.put(key, address, ttl=ttl)
        self._alive[key] = KeepAlive(self.client, key, ttl, self._clock)

    async def deregister(self, service: str, instance: str) -> None:
        """Withdraw ``instance`` at once."""
        key = self._key(service, instance)
        self.stop_keepalive(service, instance)
        await self.client.delete(key)

    def stop_keepalive(self, service: str, instance: str) -> None:
        """Stop renewing ``instance`` (as if its process died): it goes when its TTL ends."""
        alive = self._alive.pop(self._key(service, instance), None)
        if alive is not None:
            alive.stop()

    async def instances(self, service: str) -> dict[str, str]:
        """The live instances of ``service``: instance name -> address."""
        entries, _ = await self.client.list(f"{self.prefix}{service}/")
        return _instances(entries, f"{self.prefix}{service}/")

    def watch(self, service: str, on_change: Callable[[dict[str, str]], None]) -> Callable[[], None]:
        """Call ``on_change`` with the instances now and after every change,
        until the returned function is called."""
        prefix = f"{self.prefix}{service}/"
        return self.client.follow(prefix, lambda entries: on_change(_instances(entries, prefix)))


def _instances(entries, prefix: str) -> dict[str, str]:
    return {e.key[len(prefix):]: e.value for e in entries}
