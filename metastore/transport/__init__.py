"""The Twisted TCP protocol that carries Raft messages between peers.

Modules, one job each:

- ``codec``: Raft messages <-> versioned msgpack bytes; ``MalformedFrame``.
- ``urls``: ``http://host:port`` / ``tcp://host:port`` / ``host:port`` parsing.
- ``protocol``: the framed, one-way peer connections and their handshake.
- ``peers``: ``PeerTransport``, the service the node driver uses.
"""

from .codec import MalformedFrame, decode_batch, encode_batch
from .peers import PeerTransport, TransportSettings, cluster_id_from_token
from .urls import parse_peer_url

__all__ = [
    "MalformedFrame",
    "PeerTransport",
    "TransportSettings",
    "cluster_id_from_token",
    "decode_batch",
    "encode_batch",
    "parse_peer_url",
]
