"""The disk worker's thread: jobs run in order off the calling thread, and
their outcome comes back through the reactor's ``callFromThread``."""

from __future__ import annotations

import threading

from twisted.trial.unittest import SynchronousTestCase

from metastore.diskworker import DiskThread


class RecordingReactor:
    """Keeps what the worker thread hands back, to run it in the test's thread."""

    def __init__(self) -> None:
        self.calls: list = []
        self._lock = threading.Lock()

    def callFromThread(self, f, *args) -> None:
        with self._lock:
            self.calls.append((f, args))

    def run_calls(self) -> None:
        for f, args in self.calls:
            f(*args)
        self.calls = []


class DiskThreadTests(SynchronousTestCase):
    """``DiskThread`` runs each job on its own thread, in order, and fires
    the job's Deferred only through the reactor."""

    def test_results_come_back_through_the_reactor_in_order(self) -> None:
        """Each job's result fires its Deferred once the reactor runs the
        handed-back call, in the order the jobs were queued, and the jobs
        ran on another thread."""
        reactor = RecordingReactor()
        worker = DiskThread(reactor, "test-disk")
        ran_on: list[threading.Thread] = []

        def job(n):
            def run():
                ran_on.append(threading.current_thread())
                return n
            return run

        deferreds = [worker.run(job(n)) for n in range(3)]
        worker.stop()  # the queued jobs finish first
        for d in deferreds:
            self.assertNoResult(d)
        reactor.run_calls()
        self.assertEqual([self.successResultOf(d) for d in deferreds], [0, 1, 2])
        self.assertEqual(len(ran_on), 3)
        self.assertNotIn(threading.current_thread(), ran_on)

    def test_a_failing_job_fails_its_deferred_only(self) -> None:
        """An exception in a job fails that job's Deferred; the next job still runs."""
        reactor = RecordingReactor()
        worker = DiskThread(reactor, "test-disk")

        def broken():
            raise OSError(5, "Input/output error")

        failed, after = worker.run(broken), worker.run(lambda: "ok")
        worker.stop()
        reactor.run_calls()
        self.failureResultOf(failed, OSError)
        self.assertEqual(self.successResultOf(after), "ok")
