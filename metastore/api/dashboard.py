"""The web dashboard at ``/ui``: a few static files shipped in the package
(``metastore/api/ui/``), plain HTML, CSS and JavaScript that call the
member's own JSON APIs from the browser.

Only files named in the shipped folder are served, looked up by exact name
in a table built when the member starts: a path is never joined to a
directory, so ``..``, encoded slashes or absolute paths cannot reach any
other file, and there is no directory listing.  ``/ui`` and ``/ui/`` are the
page itself; anything else under ``/ui/`` that is not a shipped file is 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from twisted.web.resource import Resource

from metastore.api.errors import write_error

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}
"""The kinds of file the dashboard ships, and the type each is served as."""

_SERVABLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9]+)$")

INDEX = "index.html"
SECURITY_HEADERS = {
    b"X-Content-Type-Options": b"nosniff",
    b"Cache-Control": b"no-cache",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
    # Only the member's own scripts, styles and APIs; nothing inline.
    b"Content-Security-Policy": b"default-src 'none'; script-src 'self'; style-src 'self'; "
                                b"img-src 'self'; connect-src 'self'; frame-ancestors 'none'",
}


@dataclass(frozen=True)
class StaticFile:
    """One file of the dashboard, held in memory."""

    content_type: bytes
    body: bytes


def shipped_files(package: str = "metastore.api", folder: str = "ui") -> dict[str, StaticFile]:
    """Every servable file in the package's ``folder`` by its name: flat
    (no sub-folders), lower-case names, known extensions only."""
    files = {}
    for entry in (resources.files(package) / folder).iterdir():
        match = _SERVABLE_NAME.match(entry.name)
        if entry.is_file() and match and match.group(1) in CONTENT_TYPES:
            files[entry.name] = StaticFile(CONTENT_TYPES[match.group(1)], entry.read_bytes())
    return files


class DashboardResource(Resource):
    """Serves ``/ui``, ``/ui/`` and ``/ui/<file>`` (GET and HEAD) from a
    fixed table of files; the root mounts it with the whole path."""

    isLeaf = True

    def __init__(self, files: dict[str, StaticFile] | None = None) -> None:
        super().__init__()
        self._files = shipped_files() if files is None else dict(files)

    def render(self, request) -> bytes:
        """The file the path names, 404 for any other path, 405 for any
        method but GET and HEAD (both with a JSON body)."""
        if request.method not in (b"GET", b"HEAD"):
            return write_error(request, 405, "method_not_allowed", "the dashboard is read-only",
                               {b"Allow": b"GET, HEAD"})
        found = self._lookup(request.postpath)
        if found is None:
            return write_error(request, 404, "not_found", "no such dashboard file")
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"Content-Type", found.content_type)
        request.setHeader(b"Content-Length", b"%d" % len(found.body))
        return b"" if request.method == b"HEAD" else found.body

    def _lookup(self, postpath: list[bytes]) -> StaticFile | None:
        """The file a whole path (``[b"ui"]``, ``[b"ui", b""]`` or
        ``[b"ui", name]``) names, by exact name; None for any other path."""
        if postpath in ([b"ui"], [b"ui", b""]):
            return self._files.get(INDEX)
        if len(postpath) != 2:
            return None
        try:
            name = postpath[1].decode("ascii")
        except UnicodeDecodeError:
            return None
        return self._files.get(name)
