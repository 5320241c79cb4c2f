"""``metastore.bench.profile``: attributing py-spy's samples to layers."""

from twisted.trial.unittest import SynchronousTestCase

from metastore.bench.profile import layer_of, summarize

_ROOT = "thread (1): MainThread;run (twisted/internet/base.py:1)"


class SummaryTests(SynchronousTestCase):
    """Each sample counts once, for the innermost layer on its stack."""

    def test_innermost_layer_wins(self):
        """A JSON encode called from the API counts as json; the API's own
        frame on top of Twisted counts as the API."""
        self.assertEqual(layer_of(["doRead (twisted/internet/tcp.py:1)", "put (metastore/api/v3/kv.py:2)",
                                   "dumps (json/__init__.py:3)"]), "json")
        self.assertEqual(layer_of(["doRead (twisted/internet/tcp.py:1)", "put (metastore/api/v3/kv.py:2)"]),
                         "metastore api")
        self.assertEqual(layer_of(["EPollReactor.doPoll (twisted/internet/epollreactor.py:227)"]),
                         "idle (waiting in epoll/select)")
        self.assertEqual(layer_of(["f (elsewhere.py:1)"]), "other")

    def test_shares_of_the_main_thread_only(self):
        """Other threads' samples are left out; shares are of the main thread's."""
        collapsed = "\n".join([
            f"{_ROOT};match (werkzeug/routing/matcher.py:1) 3",
            f"{_ROOT};step (metastore/raft/raft.py:1) 1",
            "thread (2): metastore-fsync;sync (metastore/storage/wal.py:1) 50",
        ])
        text = summarize(collapsed)
        self.assertIn("4 samples of the reactor (main) thread", text)
        self.assertIn("| klein + werkzeug routing | 75.0 % |", text)
        self.assertIn("| raft core | 25.0 % |", text)
        self.assertNotIn("WAL", text)
