"""A stand-in for the watch part of ``MemberFacade``: a real ``WatchHub``
over a real store, without a node, for tests of watch streams."""

from metastore.kv.store import KeyValueStore
from metastore.watch import WatchHub


class HubMember:
    """The part of ``MemberFacade`` a ``WatchStream`` uses, over a hub."""

    def __init__(self, store: KeyValueStore, hub: WatchHub) -> None:
        self._store, self._hub = store, hub

    @property
    def revision(self) -> int:
        """The store's revision."""
        return self._store.revision

    def watch(self, key, range_end=b"", start_revision=0, filters=(), prev_kv=False, progress_notify=False, *,
              callback):
        """A watch on the hub, as ``MemberFacade.watch``."""
        return self._hub.watch(key, range_end, start_revision, filters, prev_kv, progress_notify, callback=callback)
