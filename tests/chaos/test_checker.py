"""The register linearizability checker on small hand-made histories, and
against a brute-force oracle on random ones."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.chaos.checker import (
    CAS,
    FAIL,
    OK,
    READ,
    UNKNOWN,
    WRITE,
    Operation,
    check_history,
    check_key,
    check_set,
)


def op(op_id, kind, invoke, complete, value=None, expected=None, outcome=OK, key="k", process=None):
    """A shorthand Operation; ``complete=None`` means unknown."""
    if complete is None:
        outcome = UNKNOWN
    return Operation(op_id=op_id, process=op_id if process is None else process, kind=kind, key=key,
                     invoke=invoke, complete=complete, outcome=outcome, value=value, expected=expected)


class RegisterHistoryTests(SynchronousTestCase):
    """Histories that are, and are not, linearizable."""

    def test_empty(self):
        """No operations: trivially linearizable."""
        self.assertIs(check_history([]).linearizable, True)

    def test_sequential_write_then_read(self):
        """A read after a write sees it."""
        h = [op(0, WRITE, 0, 1, "a"), op(1, READ, 2, 3, "a")]
        self.assertIs(check_key("k", h).linearizable, True)

    def test_initial_value_is_absent(self):
        """A first read of a never-written key sees None; seeing a value is wrong."""
        self.assertIs(check_key("k", [op(0, READ, 0, 1, None)]).linearizable, True)
        self.assertIs(check_key("k", [op(0, READ, 0, 1, "x")]).linearizable, False)

    def test_stale_read_is_caught(self):
        """A read that starts after a write was acknowledged and sees the old value."""
        h = [op(0, WRITE, 0, 1, "a"), op(1, WRITE, 2, 3, "b"), op(2, READ, 4, 5, "a")]
        result = check_key("k", h)
        self.assertIs(result.linearizable, False)
        self.assertEqual(result.stuck_on.op_id, 2)

    def test_lost_acknowledged_write_is_caught(self):
        """An acknowledged write that later reads do not see (they see absent)."""
        h = [op(0, WRITE, 0, 1, "a"), op(1, READ, 2, 3, None)]
        self.assertIs(check_key("k", h).linearizable, False)

    def test_concurrent_read_may_see_either(self):
        """A read concurrent with a write may see the old or the new value."""
        for seen in (None, "a"):
            h = [op(0, WRITE, 0, 10, "a"), op(1, READ, 1, 2, seen)]
            self.assertIs(check_key("k", h).linearizable, True, seen)

    def test_reads_cannot_go_back(self):
        """Two sequential reads concurrent with one write: new then old is wrong."""
        h = [op(0, WRITE, 0, 10, "a"), op(1, READ, 1, 2, "a"), op(2, READ, 3, 4, None)]
        self.assertIs(check_key("k", h).linearizable, False)

    def test_unknown_write_may_apply_later(self):
        """A timed-out write may show up long after its client gave up."""
        h = [op(0, WRITE, 0, None, "a"), op(1, READ, 5, 6, None), op(2, READ, 7, 8, "a")]
        self.assertIs(check_key("k", h).linearizable, True)

    def test_unknown_write_may_never_apply(self):
        """A timed-out write may never take effect."""
        h = [op(0, WRITE, 0, None, "a"), op(1, READ, 5, 6, None)]
        self.assertIs(check_key("k", h).linearizable, True)

    def test_unknown_write_cannot_apply_before_invoke(self):
        """A value read before its (unknown) write was even sent is wrong."""
        h = [op(0, READ, 0, 1, "a"), op(1, WRITE, 2, None, "a")]
        self.assertIs(check_key("k", h).linearizable, False)

    def test_unknown_write_applies_once(self):
        """An unknown write cannot reappear after being overwritten."""
        h = [
            op(0, WRITE, 0, None, "a"),
            op(1, READ, 1, 2, "a"),
            op(2, WRITE, 3, 4, "b"),
            op(3, READ, 5, 6, "a"),
        ]
        self.assertIs(check_key("k", h).linearizable, False)

    def test_failed_write_never_applies(self):
        """A definitely failed write is dropped; seeing its value is wrong."""
        h = [op(0, WRITE, 0, 1, "a", outcome=FAIL), op(1, READ, 2, 3, "a")]
        self.assertIs(check_key("k", h).linearizable, False)

    def test_cas_success(self):
        """A CAS succeeds only on the value it expected."""
        h = [op(0, WRITE, 0, 1, "a"), op(1, CAS, 2, 3, "b", expected="a"), op(2, READ, 4, 5, "b")]
        self.assertIs(check_key("k", h).linearizable, True)
        h = [op(0, WRITE, 0, 1, "a"), op(1, CAS, 2, 3, "b", expected="z"), op(2, READ, 4, 5, "b")]
        self.assertIs(check_key("k", h).linearizable, False)

    def test_cas_on_absent(self):
        """``expected=None`` is If-None-Match: only when the key is absent."""
        self.assertIs(check_key("k", [op(0, CAS, 0, 1, "a", expected=None)]).linearizable, True)
        h = [op(0, WRITE, 0, 1, "x"), op(1, CAS, 2, 3, "a", expected=None)]
        self.assertIs(check_key("k", h).linearizable, False)

    def test_failed_cas_is_a_read_of_something_else(self):
        """A 412 means the value differed from ``expected`` at some instant."""
        h = [op(0, WRITE, 0, 1, "a"), op(1, CAS, 2, 3, "b", expected="a", outcome=FAIL)]
        self.assertIs(check_key("k", h).linearizable, False)
        h = [op(0, WRITE, 0, 1, "a"), op(1, CAS, 2, 3, "b", expected="z", outcome=FAIL), op(2, READ, 4, 5, "a")]
        self.assertIs(check_key("k", h).linearizable, True)

    def test_two_cas_on_same_value_cannot_both_win(self):
        """Two concurrent CAS from the same expected value: at most one succeeds."""
        h = [
            op(0, WRITE, 0, 1, "a"),
            op(1, CAS, 2, 5, "b", expected="a"),
            op(2, CAS, 2, 5, "c", expected="a"),
        ]
        self.assertIs(check_key("k", h).linearizable, False)

    def test_unknown_cas_only_applies_when_expected_holds(self):
        """An unknown CAS whose precondition never held cannot be the source of a value."""
        h = [op(0, WRITE, 0, 1, "a"), op(1, CAS, 2, None, "b", expected="z"), op(2, READ, 3, 4, "b")]
        self.assertIs(check_key("k", h).linearizable, False)
        h = [op(0, WRITE, 0, 1, "a"), op(1, CAS, 2, None, "b", expected="a"), op(2, READ, 3, 4, "b")]
        self.assertIs(check_key("k", h).linearizable, True)

    def test_keys_are_independent(self):
        """A violation on one key is reported on that key only."""
        h = [
            op(0, WRITE, 0, 1, "a", key="x"), op(1, READ, 2, 3, "a", key="x"),
            op(2, WRITE, 0, 1, "a", key="y"), op(3, READ, 2, 3, None, key="y"),
        ]
        result = check_history(h)
        self.assertIs(result.linearizable, False)
        self.assertEqual([k.key for k in result.violations], ["y"])

    def test_bound_is_reported_not_hung(self):
        """Past ``max_states`` the verdict is None (too big), not a guess."""
        h = [op(i, WRITE, 0, 100, f"v{i}") for i in range(12)] + [op(12, READ, 0, 100, "v3")]
        self.assertIs(check_key("k", h, max_states=10).linearizable, None)
        self.assertIs(check_key("k", h).linearizable, True)

    def test_many_concurrent_unknown_writes_stay_fast(self):
        """Memoization keeps a wide concurrent history tractable."""
        h = [op(i, WRITE, i * 0.1, None, f"v{i}") for i in range(40)]
        h += [op(40 + i, READ, 10 + i, 10.5 + i, f"v{39 - i}") for i in range(1)]
        self.assertIs(check_key("k", h).linearizable, True)

    def test_operation_round_trips_json(self):
        """The history file format reproduces the operation."""
        o = op(3, CAS, 1.5, None, "b", expected="a")
        self.assertEqual(Operation.from_json(o.to_json()), o)


class SetCheckTests(SynchronousTestCase):
    """The append/set workload's final check."""

    def test_lost_acknowledged_write(self):
        """An acknowledged key missing at the end is reported lost."""
        result = check_set(acknowledged=["a", "b"], unknown=["c"], present=["a"])
        self.assertEqual(result.lost, ("b",))
        self.assertFalse(result.ok)

    def test_unknown_may_be_missing(self):
        """Unknown writes are neither required nor forbidden."""
        result = check_set(acknowledged=["a"], unknown=["c", "d"], present=["a", "d"])
        self.assertTrue(result.ok)
        self.assertEqual(result.unknown_present, 1)


def brute_force(ops):
    """Linearizable by trying every total order of every subset that keeps the ok ops."""
    ops = [o for o in ops if not (o.outcome == UNKNOWN and o.kind == READ)]
    must = [o for o in ops if o.outcome != UNKNOWN]
    maybe = [o for o in ops if o.outcome == UNKNOWN]
    for r in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, r):
            for order in itertools.permutations(must + list(chosen)):
                if valid_order(order):
                    return True
    return False


def valid_order(order):
    """Respects real time and the register semantics."""
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b.complete is not None and b.complete < a.invoke:
                return False
    state = None
    for o in order:
        if o.kind == READ:
            if o.value != state:
                return False
        elif o.kind == WRITE:
            state = o.value
        elif o.outcome == FAIL:
            if o.expected == state:
                return False
        else:
            if o.expected != state:
                return False
            state = o.value
    return True


@st.composite
def small_histories(draw):
    """Up to 5 operations on one key with values from a tiny alphabet."""
    n = draw(st.integers(0, 5))
    ops = []
    for i in range(n):
        kind = draw(st.sampled_from([READ, WRITE, CAS]))
        invoke = draw(st.integers(0, 8))
        outcome = draw(st.sampled_from([OK, OK, UNKNOWN] + ([FAIL] if kind == CAS else [])))
        complete = None if outcome == UNKNOWN else invoke + draw(st.integers(0, 4))
        value = draw(st.sampled_from([None, "a", "b"])) if kind == READ else f"w{i}"
        expected = draw(st.sampled_from([None, "a", "w0", "w1", "w2"])) if kind == CAS else None
        ops.append(Operation(i, i, kind, "k", float(invoke), None if complete is None else float(complete),
                             outcome, value, expected))
    return ops


class OracleTests(SynchronousTestCase):
    """The search agrees with exhaustive enumeration on small random histories."""

    @settings(max_examples=300, deadline=None)
    @given(small_histories())
    def test_agrees_with_brute_force(self, ops):
        """Same verdict as trying every order."""
        self.assertEqual(check_key("k", ops).linearizable, brute_force(ops), [o.describe() for o in ops])
