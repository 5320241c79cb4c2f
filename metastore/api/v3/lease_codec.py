"""etcd's Lease messages to and from the gateway's JSON (jsonpb's field
names ``ID``, ``TTL``, ``grantedTTL``, ``keys``; zero values left out)."""

from __future__ import annotations

from metastore.api.v3.header import Headers
from metastore.api.v3.json_fields import bool_field, int_field
from metastore.api.v3.kv_codec import b64, without_zeros
from metastore.api.v3.lease import (
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseLeasesRequest,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
)

# -- requests ----------------------------------------------------------------


def grant_request(body: dict) -> LeaseGrantRequest:
    """A ``LeaseGrantRequest`` from its JSON (``TTL``, ``ID``; MetaStore
    refuses a negative ``ID``, which etcd would take)."""
    return LeaseGrantRequest(ttl=int_field(body, "TTL"), id=int_field(body, "ID", 0))


def revoke_request(body: dict) -> LeaseRevokeRequest:
    """A ``LeaseRevokeRequest`` from its JSON (``ID``)."""
    return LeaseRevokeRequest(int_field(body, "ID"))


def keepalive_request(body: dict) -> LeaseKeepAliveRequest:
    """A ``LeaseKeepAliveRequest`` from its JSON (``ID``)."""
    return LeaseKeepAliveRequest(int_field(body, "ID"))


def time_to_live_request(body: dict) -> LeaseTimeToLiveRequest:
    """A ``LeaseTimeToLiveRequest`` from its JSON (``ID``, ``keys``)."""
    return LeaseTimeToLiveRequest(int_field(body, "ID"), bool_field(body, "keys"))


def leases_request(body: dict) -> LeaseLeasesRequest:
    """A ``LeaseLeasesRequest`` (its body has no fields)."""
    return LeaseLeasesRequest()


# -- responses ---------------------------------------------------------------


def grant_response(response: LeaseGrantResponse, headers: Headers) -> dict:
    """A ``LeaseGrantResponse``."""
    return without_zeros({
        "header": headers.at(response.header.revision), "ID": str(response.id), "TTL": str(response.ttl),
    })  # fmt: skip


def revoke_response(response: LeaseRevokeResponse, headers: Headers) -> dict:
    """A ``LeaseRevokeResponse``: its header only."""
    return {"header": headers.at(response.header.revision)}


def keepalive_response(response: LeaseKeepAliveResponse, headers: Headers) -> dict:
    """A ``LeaseKeepAliveResponse`` (no ``TTL`` for an unknown lease)."""
    return without_zeros({
        "header": headers.at(response.header.revision), "ID": str(response.id), "TTL": str(response.ttl),
    })  # fmt: skip


def time_to_live_response(response: LeaseTimeToLiveResponse, headers: Headers) -> dict:
    """A ``LeaseTimeToLiveResponse`` (``TTL`` -1 for an unknown lease)."""
    return without_zeros({
        "header": headers.at(response.header.revision),
        "ID": str(response.id),
        "TTL": str(response.ttl),
        "grantedTTL": str(response.granted_ttl),
        "keys": [b64(key) for key in response.keys],
    })  # fmt: skip


def leases_response(response: LeaseLeasesResponse, headers: Headers) -> dict:
    """A ``LeaseLeasesResponse``: ``leases`` as ``{"ID": ...}`` objects."""
    return without_zeros({
        "header": headers.at(response.header.revision), "leases": [{"ID": str(i)} for i in response.ids],
    })  # fmt: skip
