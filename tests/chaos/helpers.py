"""Blocking helpers for tests that poke one real member with raw sockets.

These tests drive a member process from synchronous code (hypothesis
examples are synchronous), so everything here blocks, with a bound.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

from tests.process import Member, free_port


def http_json(url: str, timeout: float = 2.0) -> tuple[int, dict | None]:
    """``(status, JSON body or None)``; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return 0, None


def http_request(url: str, method: str, body: bytes | None = None, timeout: float = 5.0) -> int:
    """The status of one request; 0 when nothing answered."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def poll(condition, timeout: float, what: str, interval: float = 0.1):
    """Call ``condition`` until it returns a true value (bounded); that value."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def is_leader(member: Member) -> bool:
    """Whether the member's /admin/status says it leads."""
    status = http_json(member.url + "/admin/status")[1]
    return bool(status) and status.get("role") == "leader"


def start_single_member(testcase, *extra: str) -> Member:
    """Start a one-member cluster process and wait until it leads and is healthy."""
    member = Member(
        member_id=1,
        cluster=[f"http://127.0.0.1:{free_port()}"],
        http_port=free_port(),
        workdir=testcase.mktemp(),
        extra=["--request-timeout", "2", *extra],
    )
    member.start()
    testcase.addCleanup(member.kill)
    poll(lambda: is_leader(member), timeout=30, what=f"member to lead; log:\n{member.log_text()[-2000:]}")
    return member


def peer_port(member: Member) -> int:
    """The port the member listens on for peers."""
    return int(member.cluster[member.member_id - 1].rsplit(":", 1)[1])


def exchange(port: int, data: bytes, wait_for_close: float = 5.0, half_close: bool = False) -> tuple[bool, bytes]:
    """Connect, send ``data`` (then end our side when ``half_close``), and
    read until the peer closes or ``wait_for_close`` passes: (whether the
    peer closed, what it sent)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_for_close) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            return True, received
        deadline = time.monotonic() + wait_for_close
        for _ in range(10_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, received
            s.settimeout(remaining)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return False, received
            except OSError:
                return True, received
            if not chunk:
                return True, received
            received += chunk
    return False, received
