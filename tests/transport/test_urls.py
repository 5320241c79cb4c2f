"""Tests for ``metastore.transport.urls``."""

from twisted.trial.unittest import SynchronousTestCase

from metastore.transport.urls import is_ip_literal, is_ipv6_literal, parse_peer_url


class ParsePeerURLTests(SynchronousTestCase):
    """parse_peer_url accepts the documented spellings and names bad input."""

    def test_spellings(self) -> None:
        """http://, https://, tcp:// and bare host:port all mean (host, port)."""
        for url in (
            "http://127.0.0.1:12379",
            "https://127.0.0.1:12379",
            "HTTP://127.0.0.1:12379/",
            "tcp://127.0.0.1:12379",
            "127.0.0.1:12379",
            " 127.0.0.1:12379 ",
        ):
            self.assertEqual(parse_peer_url(url), ("127.0.0.1", 12379), url)
        self.assertEqual(parse_peer_url("http://node-1.example:2380"), ("node-1.example", 2380))

    def test_ipv6(self) -> None:
        """An IPv6 literal is written in brackets and returned without them."""
        self.assertEqual(parse_peer_url("[::1]:2380"), ("::1", 2380))
        self.assertEqual(parse_peer_url("http://[fe80::1]:9"), ("fe80::1", 9))
        self.assertTrue(is_ipv6_literal("::1"))
        self.assertFalse(is_ipv6_literal("127.0.0.1"))
        self.assertTrue(is_ip_literal("127.0.0.1"))
        self.assertFalse(is_ip_literal("localhost"))

    def test_port_zero(self) -> None:
        """Port 0 is only for listening addresses."""
        self.assertEqual(parse_peer_url("tcp://127.0.0.1:0", allow_port_zero=True), ("127.0.0.1", 0))
        with self.assertRaisesRegex(ValueError, "out of range"):
            parse_peer_url("tcp://127.0.0.1:0")

    def test_rejected(self) -> None:
        """Each kind of bad URL is a ValueError naming the URL."""
        for url, reason in (
            ("ftp://h:1", "unsupported scheme"),
            ("h:1/path", "no path"),
            ("http://user@h:1", "no path"),
            ("h", "missing :port"),
            (":80", "missing host"),
            ("h:port", "not a number"),
            ("h:65536", "out of range"),
            ("h:-1", "not a number"),
            ("::1:80", "brackets"),
            ("[::1]80", r"\[ipv6-address\]:port"),
            ("[nothost]:80", "not an IPv6 address"),
            ("a b:80", "whitespace"),
            ("h:١٢", "not a number"),
        ):
            with self.assertRaisesRegex(ValueError, reason, msg=url) as caught:
                parse_peer_url(url)
            self.assertIn(repr(url), str(caught.exception))

    def test_not_a_string(self) -> None:
        """A non-string is a ValueError, not a TypeError deep inside."""
        with self.assertRaises(ValueError):
            parse_peer_url(b"h:1")  # type: ignore[arg-type]
