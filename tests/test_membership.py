"""Tests for metastore.membership: the applied membership and its record."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from metastore.kv.commands import PublishMember
from metastore.membership import Membership, MembershipError
from metastore.raft.types import ConfChange, ConfChangeType, ConfState
from metastore.storage.engine import ClusterState, MemberRecord

URLS = {1: "http://127.0.0.1:9021", 2: "http://127.0.0.1:9022", 3: "http://127.0.0.1:9023"}


class RecordingTransport:
    """Records the peers the membership adds and removes."""

    def __init__(self) -> None:
        self.added: list[tuple[int, str]] = []
        self.removed: list[int] = []

    def add_peer(self, peer_id: int, url: str) -> None:
        self.added.append((peer_id, url))

    def remove_peer(self, peer_id: int) -> None:
        self.removed.append(peer_id)


def bootstrapped(member_id: int = 1) -> Membership:
    """A membership that applied the bootstrap entries of a three-member cluster."""
    membership = Membership(member_id, URLS)
    for i in URLS:
        membership.apply_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, i))
    return membership


class QuestionTests(SynchronousTestCase):
    """Who is a member, who was removed, whom to connect to."""

    def test_before_any_membership_the_cluster_list_names_the_peers(self) -> None:
        membership = Membership(1, URLS)
        self.assertEqual(membership.peer_urls(), URLS)
        self.assertTrue(membership.accepts_peer(2))
        self.assertFalse(membership.accepts_peer(9))
        self.assertFalse(membership.was_removed(2))

    def test_bootstrap_entries_take_their_urls_from_the_cluster_list(self) -> None:
        membership = bootstrapped()
        self.assertEqual([(m.member_id, m.peer_url) for m in membership.listing()], sorted(URLS.items()))

    def test_a_removed_member_is_refused_and_reported_removed(self) -> None:
        membership = bootstrapped()
        transport = RecordingTransport()
        membership.transport = transport
        membership.apply_conf_change(ConfChange(ConfChangeType.ConfChangeRemoveNode, 3))
        self.assertFalse(membership.is_member(3))
        self.assertTrue(membership.was_removed(3))
        self.assertFalse(membership.accepts_peer(3))
        self.assertEqual(transport.removed, [3])
        self.assertFalse(membership.self_removed)

    def test_own_removal_is_noted(self) -> None:
        membership = bootstrapped(2)
        membership.apply_conf_change(ConfChange(ConfChangeType.ConfChangeRemoveNode, 2))
        self.assertTrue(membership.self_removed)

    def test_absent_from_a_known_membership_counts_as_removed(self) -> None:
        membership = Membership(1, URLS, ClusterState((1, 2), (), (MemberRecord(1, URLS[1]), MemberRecord(2, URLS[2]))))
        self.assertTrue(membership.was_removed(3))
        self.assertFalse(membership.was_removed(2))


class ProposalTests(SynchronousTestCase):
    """Building the ConfChange of a member operation, and judging one."""

    def test_add_change_carries_the_peer_url(self) -> None:
        change = bootstrapped().add_change(4, "http://127.0.0.1:9024")
        self.assertEqual(change, ConfChange(ConfChangeType.ConfChangeAddNode, 4, b"http://127.0.0.1:9024"))

    def test_add_refuses_a_bad_url_then_an_existing_member(self) -> None:
        membership = bootstrapped()
        with self.assertRaises(MembershipError) as caught:
            membership.add_change(2, "not a url")
        self.assertEqual(caught.exception.code, "bad_peer_url")
        with self.assertRaises(MembershipError) as caught:
            membership.add_change(2, "http://127.0.0.1:9029")
        self.assertEqual(caught.exception.code, "member_exists")

    def test_remove_refuses_an_unknown_member(self) -> None:
        with self.assertRaises(MembershipError) as caught:
            bootstrapped().remove_change(7)
        self.assertEqual(caught.exception.code, "no_such_member")

    def test_invalid_reason(self) -> None:
        membership = bootstrapped()
        add, remove = ConfChangeType.ConfChangeAddNode, ConfChangeType.ConfChangeRemoveNode
        self.assertIsNone(membership.invalid_reason(ConfChange(add, 4, b"http://127.0.0.1:9024")))
        self.assertIsNone(membership.invalid_reason(ConfChange(remove, 2)))
        self.assertIn("already", membership.invalid_reason(ConfChange(add, 2)))
        self.assertIn("not in the cluster", membership.invalid_reason(ConfChange(remove, 9)))
        membership.apply_conf_change(ConfChange(remove, 3))
        self.assertIn("cannot be reused", membership.invalid_reason(ConfChange(add, 3)))
        membership.apply_conf_change(ConfChange(remove, 2))
        self.assertIn("only voter", membership.invalid_reason(ConfChange(remove, 1)))

    def test_wait_applied_fires_when_the_change_applies(self) -> None:
        membership = bootstrapped()
        change = ConfChange(ConfChangeType.ConfChangeAddNode, 4, b"http://127.0.0.1:9024")
        d = membership.wait_applied(change)
        self.assertNoResult(d)
        membership.apply_conf_change(change)
        self.assertEqual(self.successResultOf(d), change)


class RecordTests(SynchronousTestCase):
    """The engine's record: produced when changed, restored whole."""

    def test_changed_record_once_per_change(self) -> None:
        membership = bootstrapped()
        conf = ConfState((1, 2, 3), ())
        record = membership.changed_record(lambda: conf)
        self.assertEqual(record.voters, (1, 2, 3))
        self.assertEqual([m.member_id for m in record.members], [1, 2, 3])
        self.assertIsNone(membership.changed_record(lambda: conf))
        membership.apply_attributes(PublishMember(2, "http://127.0.0.1:9122", "http://127.0.0.1:9123"))
        record = membership.changed_record(lambda: conf)
        self.assertEqual(
            (record.members[1].client_url, record.members[1].grpc_url), ("http://127.0.0.1:9122", "http://127.0.0.1:9123")
        )

    def test_publishes_again_when_the_grpc_url_comes_later(self) -> None:
        """A member whose gRPC port listens after its HTTP port publishes
        both URLs once more; with nothing new it proposes nothing."""
        membership = bootstrapped()
        proposed = []
        membership.client_url = "http://127.0.0.1:9111"

        def propose(command):
            proposed.append(command)
            membership.apply_attributes(command)
            return defer.succeed(None)

        membership.maybe_publish(propose)
        membership.grpc_url = "http://127.0.0.1:9112"
        membership.maybe_publish(propose)
        membership.maybe_publish(propose)
        self.assertEqual(proposed, [
            PublishMember(1, "http://127.0.0.1:9111"), PublishMember(1, "http://127.0.0.1:9111", "http://127.0.0.1:9112"),
        ])  # fmt: skip

    def test_attributes_of_an_unknown_member_change_nothing(self) -> None:
        membership = bootstrapped()
        membership.changed_record(lambda: ConfState((1, 2, 3), ()))
        membership.apply_attributes(PublishMember(9, "http://127.0.0.1:9129"))
        self.assertIsNone(membership.changed_record(lambda: ConfState((1, 2, 3), ())))

    def test_restore_round_trips_and_connects(self) -> None:
        record = bootstrapped().record(ConfState((1, 2, 3), ()))
        membership = Membership(1, {})
        transport = RecordingTransport()
        membership.transport = transport
        membership.restore(record)
        self.assertEqual(membership.record(ConfState((1, 2, 3), ())), record)
        self.assertEqual(transport.added, [(2, URLS[2]), (3, URLS[3])])


class ConnectedTransport(RecordingTransport):
    """A transport connected to the peers in ``up``."""

    def __init__(self, up: set[int]) -> None:
        super().__init__()
        self.up = up

    def connected(self, peer_id: int) -> bool:
        return peer_id in self.up


class StrictReconfigurationTests(SynchronousTestCase):
    """etcd's strict reconfiguration check, from member 1's side."""

    def membership(self, up: set[int], size: int = 3) -> Membership:
        membership = Membership(1, {i: URLS[i] for i in range(1, size + 1)})
        for i in range(1, size + 1):
            membership.apply_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, i))
        membership.transport = ConnectedTransport(up)
        return membership

    def test_adding_a_voter_needs_the_new_quorum_started(self) -> None:
        add = ConfChange(ConfChangeType.ConfChangeAddNode, 4, b"http://127.0.0.1:9024")
        self.assertIsNone(self.membership({2, 3}).unsafe_reconfiguration(add))
        self.assertIn("needs 3 started", self.membership({2}).unsafe_reconfiguration(add))

    def test_a_one_member_cluster_may_add_one(self) -> None:
        add = ConfChange(ConfChangeType.ConfChangeAddNode, 2, b"http://127.0.0.1:9022")
        self.assertIsNone(self.membership(set(), size=1).unsafe_reconfiguration(add))

    def test_removing_needs_a_quorum_of_the_rest_started(self) -> None:
        membership = self.membership({2})  # member 3 is down
        self.assertIn("would leave 1 started", membership.unsafe_reconfiguration(ConfChange(ConfChangeType.ConfChangeRemoveNode, 2)))
        self.assertIsNone(membership.unsafe_reconfiguration(ConfChange(ConfChangeType.ConfChangeRemoveNode, 3)))

    def test_learners_and_the_flag_off_are_not_checked(self) -> None:
        membership = self.membership(set())
        learner = ConfChange(ConfChangeType.ConfChangeAddLearnerNode, 4, b"http://127.0.0.1:9024")
        self.assertIsNone(membership.unsafe_reconfiguration(learner))
        membership.strict_reconfig_check = False
        self.assertIsNone(membership.unsafe_reconfiguration(ConfChange(ConfChangeType.ConfChangeAddNode, 4)))
