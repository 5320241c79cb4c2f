"""The test ports: handed out once per process and once per machine."""

import os
import tempfile
import time

from twisted.trial import unittest

from metastore import ports


class ClaimTests(unittest.TestCase):
    """A port's claim file keeps other processes from handing it out."""

    def setUp(self) -> None:
        self.patch(ports, "_CLAIMS", tempfile.mkdtemp(prefix="ports-test-"))

    def test_a_claimed_port_is_refused_until_the_claim_is_stale(self) -> None:
        self.assertTrue(ports._claim(20001))
        self.assertFalse(ports._claim(20001), "a second process must not get the port")
        old = time.time() - ports.CLAIM_SECONDS - 1
        os.utime(os.path.join(ports._CLAIMS, "20001"), (old, old))
        self.assertTrue(ports._claim(20001), "a stale claim is taken over")
        self.assertFalse(ports._claim(20001))
        self.assertEqual(os.listdir(ports._CLAIMS), ["20001"])

    def test_free_port_claims_what_it_hands_out(self) -> None:
        port = ports.free_port()
        self.assertTrue(ports._LOWEST <= port or port >= ports._ephemeral_low())
        self.assertIn(str(port), os.listdir(ports._CLAIMS))
        self.assertFalse(ports._claim(port))

    def test_without_a_claims_directory_ports_are_still_handed_out(self) -> None:
        blocker = os.path.join(ports._CLAIMS, "file")
        open(blocker, "w").close()
        self.patch(ports, "_CLAIMS", os.path.join(blocker, "sub"))
        self.assertTrue(ports._claim(20002))
