"""``metastorectl``: etcdctl's everyday commands against a MetaStore (or
etcd) cluster, over the blocking client.

Global flags as etcdctl takes them, each also from the environment
(``METASTORECTL_<FLAG>``): ``--endpoints`` (comma-separated),
``--user`` (``name`` or ``name:password``), ``--password``,
``--command-timeout``, ``-w/--write-out`` (``simple``, ``table``,
``json``; the default is ``table`` on a terminal, ``simple`` otherwise).
"""

from __future__ import annotations

import functools
import os
import sys
import time

import click

from metastore.client import wire
from metastore.client.failover import Endpoints
from metastore.client.stream import WatchCompacted
from metastore.client.sync import Client
from metastore.ctl.output import emit, header_json, kv_json, text
from metastore.ctl.txn_text import TxnSyntaxError, parse_txn


class Context:
    """What every command gets: the flags, and the client made from them."""

    def __init__(self, endpoints: str, user: str | None, password: str | None, timeout: float, fmt: str | None):
        self.endpoints = Endpoints.parse(endpoints)
        if user and ":" in user and password is None:
            user, password = user.split(":", 1)
        self.user, self.password, self.timeout = user, password, timeout
        self.format = fmt or ("table" if sys.stdout.isatty() else "simple")
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """The client of ``--endpoints`` (made on first use)."""
        if self._client is None:
            self._client = Client(self.endpoints, timeout=self.timeout, user=self.user, password=self.password)
        return self._client

    def member_urls(self, cluster: bool) -> list[str]:
        """``--endpoints``, or with ``--cluster`` every member's client URL."""
        if not cluster:
            return list(self.endpoints.urls)
        return [m.client_urls[0] for m in self.client.member_list().members if m.client_urls]


pass_context = click.make_pass_decorator(Context)


def reports_errors(command):
    """Turn the client's errors into etcdctl's ``Error: ...`` and exit 1."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (wire.ClientError, wire.NoMemberAvailable, TxnSyntaxError, OSError) as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)

    return run


def _hex(value: str) -> int:
    try:
        return int(value, 16)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a hexadecimal id") from None


@click.group(context_settings={"auto_envvar_prefix": "METASTORECTL", "help_option_names": ["-h", "--help"]})
@click.option("--endpoints", default="127.0.0.1:2379", show_default=True, help="Comma-separated member URLs.")
@click.option("--user", default=None, help="name[:password] for authentication.")
@click.option("--password", default=None, help="Password of --user.")
@click.option("--command-timeout", default=5.0, show_default=True, help="Seconds for each request.")
@click.option("-w", "--write-out", type=click.Choice(["simple", "table", "json"]), default=None,
              help="Output format (default: table on a terminal, simple otherwise).")
@click.pass_context
def main(ctx, endpoints, user, password, command_timeout, write_out):
    """A command-line client for MetaStore (and etcd) clusters."""
    ctx.obj = Context(endpoints, user, password, command_timeout, write_out)


# -- kv ---------------------------------------------------------------------


def _print_kvs(obj: Context, result: wire.RangeResult) -> None:
    rows = [[text(kv.key), text(kv.value), kv.create_revision, kv.mod_revision, kv.version, format(kv.lease, "x")]
            for kv in result.kvs]
    simple = [line for kv in result.kvs for line in (text(kv.key), text(kv.value))]
    document = {"header": header_json(result.header), "kvs": [kv_json(kv) for kv in result.kvs],
                "more": result.more, "count": result.count}
    emit(obj.format, document, ["key", "value", "create rev", "mod rev", "version", "lease"], rows, simple)


@main.command()
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--from-key", is_flag=True, help="Every key from KEY on.")
@click.option("--rev", default=0, help="Read at this revision.")
@click.option("--limit", default=0, help="At most this many keys.")
@click.option("--keys-only", is_flag=True, help="Keys without values.")
@click.option("--count-only", is_flag=True, help="Only the number of keys.")
@click.option("--consistency", type=click.Choice(["l", "s"]), default="l", help="Linearizable or serializable.")
@pass_context
@reports_errors
def get(obj, key, range_end, prefix, from_key, rev, limit, keys_only, count_only, consistency):
    """Keys and their values."""
    result = obj.client.get(key, range_end, prefix=prefix, from_key=from_key, revision=rev, limit=limit,
                            keys_only=keys_only, count_only=count_only, serializable=consistency == "s")
    if count_only and obj.format != "json":
        click.echo(result.count)
        return
    _print_kvs(obj, result)


@main.command()
@click.argument("key")
@click.argument("value", required=False)
@click.option("--lease", default="0", help="Attach this lease (hexadecimal id).")
@click.option("--prev-kv", is_flag=True, help="Print the previous value.")
@pass_context
@reports_errors
def put(obj, key, value, lease, prev_kv):
    """Set KEY to VALUE (read from stdin when left out)."""
    if value is None:
        value = sys.stdin.read()
    result = obj.client.put(key, value, lease=_hex(lease), prev_kv=prev_kv)
    document = {"header": header_json(result.header)}
    lines = ["OK"]
    if result.prev_kv is not None:
        document["prev_kv"] = kv_json(result.prev_kv)
        lines += [text(result.prev_kv.key), text(result.prev_kv.value)]
    emit(obj.format, document, ["result", "revision"], [["OK", result.header.revision]], lines)


@main.command(name="del")
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--from-key", is_flag=True, help="Every key from KEY on.")
@click.option("--prev-kv", is_flag=True, help="Print the deleted keys and values.")
@pass_context
@reports_errors
def delete(obj, key, range_end, prefix, from_key, prev_kv):
    """Delete KEY, or a range of keys; prints how many were deleted."""
    result = obj.client.delete(key, range_end, prefix=prefix, from_key=from_key, prev_kv=prev_kv)
    lines = [str(result.deleted)] + [line for kv in result.prev_kvs for line in (text(kv.key), text(kv.value))]
    document = {"header": header_json(result.header), "deleted": result.deleted,
                "prev_kvs": [kv_json(kv) for kv in result.prev_kvs]}
    emit(obj.format, document, ["deleted", "revision"], [[result.deleted, result.header.revision]], lines)


@main.command()
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--rev", default=0, help="Start at this revision (default: now).")
@click.option("--prev-kv", is_flag=True, help="Print each event's previous value.")
@click.option("--max-events", default=0, help="Exit after this many events (0: never; MetaStore's addition).")
@pass_context
@reports_errors
def watch(obj, key, range_end, prefix, rev, prev_kv, max_events):
    """Print the events on KEY (or a range) as they happen; a broken stream
    resumes on another member with no gap and no duplicate."""
    stream = obj.client.watch(key, range_end, prefix=prefix, start_revision=rev, prev_kv=prev_kv)
    seen = 0
    try:
        for event in stream:
            if obj.format == "json":
                emit("json", {"type": event.type, "kv": kv_json(event.kv),
                              "prev_kv": None if event.prev_kv is None else kv_json(event.prev_kv)}, [], [])
            else:
                click.echo(event.type)
                click.echo(text(event.kv.key))
                if event.type == "PUT":
                    click.echo(text(event.kv.value))
            sys.stdout.flush()
            seen += 1
            if max_events and seen >= max_events:
                break
    except WatchCompacted as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    finally:
        stream.cancel()


def _txn_response_lines(response) -> list[str]:
    if isinstance(response, wire.RangeResult):
        return [line for kv in response.kvs for line in (text(kv.key), text(kv.value))]
    if isinstance(response, wire.DeleteResult):
        return [str(response.deleted)]
    return ["OK"]


@main.command()
@pass_context
@reports_errors
def txn(obj):
    """A transaction from stdin, in etcdctl's format: compares, a blank
    line, the success requests, a blank line, the failure requests."""
    result = wire.parse_txn(obj.client.send(parse_txn(sys.stdin.read())))
    outcome = "SUCCESS" if result.succeeded else "FAILURE"
    lines = [outcome] + [line for r in result.responses for line in ["", *_txn_response_lines(r)]]
    document = {"header": header_json(result.header), "succeeded": result.succeeded,
                "responses": [_txn_response_lines(r) for r in result.responses]}
    emit(obj.format, document, ["result", "revision"], [[outcome, result.header.revision]], lines)


@main.command()
@click.argument("revision", type=int)
@click.option("--physical", is_flag=True, help="Wait until the compaction is applied everywhere.")
@pass_context
@reports_errors
def compaction(obj, revision, physical):
    """Drop the history below REVISION."""
    obj.client.compact(revision, physical)
    click.echo(f"compacted revision {revision}")


@main.command()
@click.option("--cluster", is_flag=True, help="Every member, not only --endpoints.")
@pass_context
@reports_errors
def defrag(obj, cluster):
    """Defragment the members' storage."""
    for url in obj.member_urls(cluster):
        obj.client.defragment(url)
        click.echo(f"Finished defragmenting etcd member[{url}]")


# -- leases -----------------------------------------------------------------


@main.group()
def lease():
    """Grant, keep alive, revoke and inspect leases."""


@lease.command()
@click.argument("ttl", type=int)
@pass_context
@reports_errors
def grant(obj, ttl):
    """A new lease of TTL seconds."""
    granted = obj.client.lease_grant(ttl)
    emit(obj.format, {"header": header_json(granted.header), "ID": granted.id, "TTL": granted.ttl},
         ["id", "ttl"], [[format(granted.id, "x"), granted.ttl]],
         [f"lease {granted.id:x} granted with TTL({granted.ttl}s)"])


@lease.command()
@click.argument("lease_id")
@pass_context
@reports_errors
def revoke(obj, lease_id):
    """Revoke a lease (its keys are deleted)."""
    obj.client.lease_revoke(_hex(lease_id))
    click.echo(f"lease {lease_id} revoked")


@lease.command(name="keep-alive")
@click.argument("lease_id")
@click.option("--once", is_flag=True, help="Keep it alive once and exit.")
@pass_context
@reports_errors
def keep_alive(obj, lease_id, once):
    """Keep a lease alive (until interrupted, or ``--once``)."""
    number = _hex(lease_id)
    while True:
        answer = obj.client.lease_keepalive_once(number)
        if answer.ttl <= 0:
            click.echo(f"lease {lease_id} expired or revoked.")
            sys.exit(1)
        click.echo(f"lease {lease_id} keepalived with TTL({answer.ttl})")
        sys.stdout.flush()
        if once:
            return
        time.sleep(max(answer.ttl / 3, 0.5))


@lease.command()
@click.argument("lease_id")
@click.option("--keys", is_flag=True, help="List the lease's keys.")
@pass_context
@reports_errors
def timetolive(obj, lease_id, keys):
    """A lease's remaining TTL."""
    answer = obj.client.lease_time_to_live(_hex(lease_id), keys)
    if answer.ttl < 0:
        line = f"lease {lease_id} already expired"
    else:
        line = f"lease {lease_id} granted with TTL({answer.granted_ttl}s), remaining({answer.ttl}s)"
        if keys:
            line += ", attached keys(" + str([text(k) for k in answer.keys]) + ")"
    document = {"header": header_json(answer.header), "id": answer.id, "ttl": answer.ttl,
                "granted-ttl": answer.granted_ttl, "keys": [wire.b64(k) for k in answer.keys]}
    emit(obj.format, document, ["id", "ttl", "granted ttl", "keys"],
         [[lease_id, answer.ttl, answer.granted_ttl, ",".join(text(k) for k in answer.keys)]], [line])


@lease.command(name="list")
@pass_context
@reports_errors
def lease_list(obj):
    """Every live lease."""
    ids = obj.client.lease_list()
    emit(obj.format, {"leases": [{"ID": i} for i in ids]}, ["id"], [[format(i, "x")] for i in ids],
         [f"found {len(ids)} leases"] + [format(i, "x") for i in ids])


# -- members ----------------------------------------------------------------


@main.group()
def member():
    """List, add, remove and promote members."""


def _print_members(obj: Context, answer: wire.MemberList, first_lines: list[str] = ()) -> None:
    rows = [[format(m.id, "x"), "started" if m.client_urls else "unstarted", m.name, ",".join(m.peer_urls),
             ",".join(m.client_urls), str(m.is_learner).lower()] for m in answer.members]
    document = {"header": header_json(answer.header),
                "members": [{"ID": m.id, "name": m.name, "peerURLs": list(m.peer_urls),
                             "clientURLs": list(m.client_urls), "isLearner": m.is_learner} for m in answer.members]}
    if answer.added is not None:
        document["member"] = {"ID": answer.added.id, "peerURLs": list(answer.added.peer_urls),
                              "isLearner": answer.added.is_learner}
    emit(obj.format, document, ["id", "status", "name", "peer addrs", "client addrs", "is learner"], rows,
         list(first_lines) + [", ".join(r) for r in rows])


@member.command(name="list")
@pass_context
@reports_errors
def member_list(obj):
    """Every member."""
    _print_members(obj, obj.client.member_list())


@member.command(name="add")
@click.argument("name", required=False)
@click.option("--peer-urls", required=True, help="The new member's peer URL.")
@click.option("--learner", is_flag=True, help="Add it as a learner (it does not vote).")
@pass_context
@reports_errors
def member_add(obj, name, peer_urls, learner):
    """Add a member (NAME is accepted for etcdctl's sake; MetaStore names members by id)."""
    answer = obj.client.member_add(peer_urls, learner)
    _print_members(obj, answer, [f"Member {answer.added.id:x} added to cluster"])


@member.command(name="remove")
@click.argument("member_id")
@pass_context
@reports_errors
def member_remove(obj, member_id):
    """Remove a member (hexadecimal id)."""
    _print_members(obj, obj.client.member_remove(_hex(member_id)), [f"Member {member_id} removed from cluster"])


@member.command(name="promote")
@click.argument("member_id")
@pass_context
@reports_errors
def member_promote(obj, member_id):
    """Promote a learner to voter (hexadecimal id)."""
    _print_members(obj, obj.client.member_promote(_hex(member_id)), [f"Member {member_id} promoted"])


# -- endpoints --------------------------------------------------------------


@main.group()
def endpoint():
    """The status, health and hash of each member."""


def _each_member(obj: Context, cluster: bool, ask) -> list[tuple[str, object]]:
    """``(url, answer or ClientError/NoMemberAvailable)`` for every member."""
    answers = []
    for url in obj.member_urls(cluster):
        try:
            answers.append((url, ask(url)))
        except (wire.ClientError, wire.NoMemberAvailable) as e:
            answers.append((url, e))
    return answers


def _exit_if_any_failed(answers) -> None:
    failed = [(url, a) for url, a in answers if isinstance(a, Exception)]
    for url, error in failed:
        click.echo(f"Error: {url}: {error}", err=True)
    if failed:
        sys.exit(1)


@endpoint.command()
@click.option("--cluster", is_flag=True, help="Every member, not only --endpoints.")
@pass_context
@reports_errors
def status(obj, cluster):
    """Each member's version, size, leader, term and indexes."""
    answers = _each_member(obj, cluster, obj.client.status)
    good = [(url, s) for url, s in answers if not isinstance(s, Exception)]
    rows = [[url, format(s.header.member_id, "x"), s.version, s.db_size, str(s.leader == s.header.member_id).lower(),
             str(s.is_learner).lower(), s.raft_term, s.raft_index, s.raft_applied_index, ",".join(s.errors)]
            for url, s in good]
    document = [{"Endpoint": url, "Status": {"header": header_json(s.header), "version": s.version,
                 "dbSize": s.db_size, "leader": s.leader, "raftIndex": s.raft_index, "raftTerm": s.raft_term,
                 "raftAppliedIndex": s.raft_applied_index, "isLearner": s.is_learner}} for url, s in good]
    emit(obj.format, document, ["endpoint", "id", "version", "db size", "is leader", "is learner", "raft term",
                                "raft index", "raft applied index", "errors"], rows)
    _exit_if_any_failed(answers)


@endpoint.command()
@click.option("--cluster", is_flag=True, help="Every member, not only --endpoints.")
@pass_context
@reports_errors
def health(obj, cluster):
    """Whether each member answers a linearizable read (as etcdctl checks)."""

    def check(url):
        obj.client.send(wire.range_request("health"), url)
        return True

    answers = _each_member(obj, cluster, check)
    rows = [[url, str(not isinstance(a, Exception)).lower(), "" if a is True else str(a)] for url, a in answers]
    lines = [f"{url} is healthy: successfully committed proposal" if a is True else f"{url} is unhealthy: {a}"
             for url, a in answers]
    emit(obj.format, [{"endpoint": r[0], "health": r[1] == "true", "error": r[2]} for r in rows],
         ["endpoint", "health", "error"], rows, lines)
    if any(a is not True for _, a in answers):
        sys.exit(1)


@endpoint.command()
@click.option("--cluster", is_flag=True, help="Every member, not only --endpoints.")
@click.option("--rev", default=0, help="Hash the keyspace at this revision (0: now).")
@pass_context
@reports_errors
def hashkv(obj, cluster, rev):
    """Each member's hash of the keyspace (equal on members that applied the same history)."""
    answers = _each_member(obj, cluster, lambda url: obj.client.hashkv(url, rev))
    good = [(url, h) for url, h in answers if not isinstance(h, Exception)]
    rows = [[url, h.hash, h.compact_revision] for url, h in good]
    document = [{"Endpoint": url, "HashKV": {"header": header_json(h.header), "hash": h.hash,
                 "compact_revision": h.compact_revision}} for url, h in good]
    emit(obj.format, document, ["endpoint", "hash", "compact revision"], rows)
    _exit_if_any_failed(answers)


# -- snapshots --------------------------------------------------------------


@main.group()
def snapshot():
    """Save a member's snapshot; restore one into a new data directory."""


@snapshot.command()
@click.argument("path", type=click.Path(dir_okay=False))
@pass_context
@reports_errors
def save(obj, path):
    """Save a new snapshot of the first of --endpoints to PATH (written to
    PATH.part, fsynced, then renamed)."""
    if len(obj.endpoints.urls) != 1:
        raise click.UsageError("snapshot save needs exactly one endpoint")
    partial = path + ".part"
    bar = None
    try:
        with open(partial, "wb") as out:
            def progress(done: int, total: int) -> None:
                nonlocal bar
                if not sys.stderr.isatty():
                    return
                if bar is None:
                    bar = click.progressbar(length=total, label="Saving snapshot", file=sys.stderr)
                    bar.__enter__()
                bar.update(done - bar.pos)

            size = obj.client.snapshot(out, obj.endpoints.urls[0], progress)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
        if os.path.exists(partial):
            os.unlink(partial)
    click.echo(f"Snapshot saved at {path} ({size} bytes)")


@snapshot.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--data-dir", required=True, help="The new member's data directory (empty or missing).")
@click.option("--id", "member_id", type=int, required=True, help="The new member's id (its position in --cluster).")
@click.option("--cluster", "peers", required=True, help="The new cluster's peer URLs, comma-separated.")
@click.option("--storage", type=click.Choice(["memory", "rocksdb"]), default="memory", show_default=True)
@click.option("--cluster-token", default="metastore", show_default=True)
def restore(path, data_dir, member_id, peers, storage, cluster_token):
    """Seed a new member's data directory from the snapshot at PATH, as
    ``--restore-from`` does; start the member with the same --id,
    --cluster, --storage and --data-dir (and without --restore-from)."""
    from metastore.config import Config, ConfigError
    from metastore.errors import StartupError
    from metastore.service import restore_data_dir

    try:
        config = Config(member_id=member_id, cluster=tuple(p.strip() for p in peers.split(",")), storage=storage,
                        data_dir=data_dir, restore_from=path, cluster_token=cluster_token).validate()
        restore_data_dir(config)
    except (ConfigError, StartupError) as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    click.echo(f"restored snapshot {path} into {data_dir} for member {member_id}")
