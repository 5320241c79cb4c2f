"""``--workers N``: front processes that serve a member's HTTP APIs, and
the link that ties them to the member's core process (``docs/workers.md``)."""
