"""What requests wait on, with time passed by a Clock."""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from metastore.errors import RequestTimedOut
from metastore.waiters import AppliedWaiters, PendingRequests, fail_after


class PendingRequestsTests(SynchronousTestCase):
    """Proposals wait for their entry, or time out."""

    def test_resolved_by_request_id(self):
        """The waiter of a request id fires with the result given for it."""
        pending = PendingRequests(Clock(), 5)
        d = pending.add(b"a")
        pending.resolve(b"other", "not mine")
        self.assertNoResult(d)
        pending.resolve(b"a", "result")
        self.assertEqual(self.successResultOf(d), "result")

    def test_times_out(self):
        """No result within the timeout: RequestTimedOut, and a late result is ignored."""
        clock = Clock()
        pending = PendingRequests(clock, 5)
        d = pending.add(b"a")
        clock.advance(4.9)
        self.assertNoResult(d)
        clock.advance(0.2)
        self.failureResultOf(d, RequestTimedOut)
        pending.resolve(b"a", "late")
        self.assertEqual(len(pending), 0)

    def test_each_request_times_out_at_its_own_deadline(self):
        """Requests added at different times expire each after the full
        timeout from its own start, whichever others were resolved, with
        one timer pending at a time."""
        clock = Clock()
        pending = PendingRequests(clock, 5)
        first = pending.add(b"a")
        clock.advance(1)
        resolved = pending.add(b"b")
        clock.advance(1)
        third = pending.add(b"c")
        pending.resolve(b"b", "done")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(3)
        self.failureResultOf(first, RequestTimedOut)
        self.assertEqual(self.successResultOf(resolved), "done")
        clock.advance(1.9)
        self.assertNoResult(third)
        clock.advance(0.1)
        self.failureResultOf(third, RequestTimedOut)
        self.assertEqual((len(pending), clock.getDelayedCalls()), (0, []))

    def test_fail_all_cancels_the_timer(self):
        """Failing every waiter leaves no timer behind."""
        clock = Clock()
        pending = PendingRequests(clock, 5)
        d = pending.add(b"a")
        pending.fail_all(RequestTimedOut("stopping"))
        self.failureResultOf(d, RequestTimedOut)
        self.assertEqual(clock.getDelayedCalls(), [])


class AppliedWaitersTests(SynchronousTestCase):
    """Waiters on the applied index fire in index order, once covered."""

    def test_fire_when_covered(self):
        """Only waiters at or below the reached index fire."""
        waiters = AppliedWaiters()
        low, high = waiters.wait(3), waiters.wait(7)
        waiters.reached(5)
        self.assertEqual(self.successResultOf(low), 5)
        self.assertNoResult(high)
        waiters.reached(7)
        self.assertEqual(self.successResultOf(high), 7)


class FailAfterTests(SynchronousTestCase):
    """``fail_after`` turns a timeout into the given error."""

    def test_error_after_timeout(self):
        """An unfired Deferred fails with the error after the time passes."""
        clock = Clock()
        d = fail_after(defer.Deferred(), 2, clock, RequestTimedOut("slow"))
        clock.advance(2)
        self.assertEqual(str(self.failureResultOf(d, RequestTimedOut).value), "slow")

    def test_result_in_time_passes_through(self):
        """A Deferred that fires in time keeps its result and leaves no timer."""
        clock = Clock()
        source = defer.Deferred()
        d = fail_after(source, 2, clock, RequestTimedOut("slow"))
        source.callback("ok")
        self.assertEqual((self.successResultOf(d), clock.getDelayedCalls()), ("ok", []))
