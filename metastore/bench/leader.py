"""``--target-leader``: find which of the endpoints is the Raft leader.

Through the seed API a member's ``GET /admin/status`` names the leader and
itself; through etcd's v3 gateway ``POST /v3/maintenance/status`` does (its
``leader`` and ``header.member_id``).  Not on the hot path, so treq is fine.
"""

from __future__ import annotations

import json

import treq

from metastore.bench.apis import SEED


def is_leader_document(api: str, document: dict) -> bool:
    """Whether a status ``document`` says the member that wrote it leads."""
    if api == SEED:
        return document.get("leader") is not None and document.get("leader") == document.get("member_id")
    leader = document.get("leader")
    return leader is not None and str(leader) == str(document.get("header", {}).get("member_id"))


async def find_leader(api: str, urls: tuple[str, ...], timeout: float = 5.0) -> str:
    """The URL among ``urls`` whose member is the leader; LookupError if none says so."""
    for url in urls:
        base = url.rstrip("/")
        try:
            if api == SEED:
                response = await treq.get(base + "/admin/status", timeout=timeout, persistent=False)
            else:
                response = await treq.post(base + "/v3/maintenance/status", data=b"{}", timeout=timeout,
                                           persistent=False)
            document = json.loads(await treq.content(response))
        except Exception:  # a member that does not answer is simply not the leader we pick
            continue
        if is_leader_document(api, document):
            return url
    raise LookupError(f"none of {', '.join(urls)} says it is the leader")
