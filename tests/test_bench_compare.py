"""The side-by-side comparison's options, tables and JSON, the throughput
plot's data, the RSS soak's arithmetic and the memory script's readings;
no server is started."""

from __future__ import annotations

import io
import os
import sys
from unittest import mock

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from metastore.bench import compare as compare_module
from metastore.bench.compare import (
    WORKLOADS,
    Column,
    Figure,
    columns_of,
    describe,
    figures_as_json,
    parse_arguments,
    print_table,
    sweep_workloads,
)
from metastore.bench.memory_after_puts import directory_mb, read_status_mb, settled_rss_mb
from metastore.bench.plot_throughput import plot_throughput, throughput_series
from metastore.bench.plotting import PlottingUnavailable, pyplot
from metastore.bench.servers import Server
from metastore.bench.soak import RssSeries, format_soak, slope_mb_per_minute


def server(name: str, api: str = "seed") -> Server:
    """A server that was never started (only its name and API are used)."""
    return Server(name, ["http://127.0.0.1:1"], api, [], "http://127.0.0.1:1/health")


def run_document(rate: float, p99: float = 5.0) -> dict:
    """The part of a ``metastore-bench --json`` document the comparison reads."""
    return {"requests_per_second": rate, "latency_ms": {"p99": p99}, "errors": {},
            "servers": [{"cpu_ms_per_1000_requests": 100.0, "rss_after_mb": 50.0},
                        {"cpu_ms_per_1000_requests": 20.0, "rss_after_mb": 10.0}]}


class OptionsTests(SynchronousTestCase):
    """``python -m metastore.bench.compare`` options."""

    def test_defaults_unchanged(self) -> None:
        """Without the new options: seed API, memory engine, issue 17's rows, no files."""
        arguments = parse_arguments([])
        self.assertEqual((arguments.api, arguments.storage, arguments.clients, arguments.members),
                         (("seed",), ("memory",), (), (1,)))
        self.assertIsNone(arguments.json)
        self.assertIsNone(arguments.plot)

    def test_lists(self) -> None:
        """Comma-separated APIs, engines and client counts."""
        arguments = parse_arguments(["--api", "seed,v3", "--storage", "memory,rocksdb", "--clients", "1,16,64,256",
                                     "--json", "out.json", "--plot", "out.png"])
        self.assertEqual(arguments.api, ("seed", "v3"))
        self.assertEqual(arguments.storage, ("memory", "rocksdb"))
        self.assertEqual(arguments.clients, (1, 16, 64, 256))
        self.assertEqual((arguments.json, arguments.plot), ("out.json", "out.png"))

    def test_unknown_names_refused(self) -> None:
        """An API or engine that does not exist is a usage error (exit 2)."""
        with mock.patch("sys.stderr", io.StringIO()) as err:
            for argv in (["--api", "seed,grpc"], ["--storage", "disk"], ["--api", ","]):
                with self.assertRaises(SystemExit) as raised:
                    parse_arguments(argv)
                self.assertEqual(raised.exception.code, 2)
        self.assertIn("choose from memory, rocksdb", err.getvalue())


class WorkloadTests(SynchronousTestCase):
    """The client-count sweep's workloads."""

    def test_sweep(self) -> None:
        """Each kind at each count, labelled as issue 17's rows are."""
        workloads = sweep_workloads((1, 64))
        self.assertEqual([label for label, _ in workloads],
                         ["put, 1 client", "put, 64 clients", "linearizable get, 1", "linearizable get, 64",
                          "serializable get, 1", "serializable get, 64"])
        self.assertEqual(workloads[3][1], ["range", "--consistency", "l", "--clients", "64"])
        self.assertEqual([describe(arguments) for _, arguments in workloads],
                         [("put", 1), ("put", 64), ("linearizable get", 1), ("linearizable get", 64),
                          ("serializable get", 1), ("serializable get", 64)])

    def test_issue_rows_described(self) -> None:
        """The default rows are the sweep's rows of the same label, argument for argument."""
        self.assertEqual([describe(arguments) for _, arguments in WORKLOADS],
                         [("put", 1), ("put", 64), ("linearizable get", 64), ("serializable get", 64)])
        sweep = dict(sweep_workloads((1, 64)))
        self.assertEqual({label: sweep[label] for label, _ in WORKLOADS}, dict(WORKLOADS))
        self.assertRaises(ValueError, describe, ["txn-mixed", "--clients", "4"])


class ColumnTests(SynchronousTestCase):
    """Columns are named by what sets them apart."""

    def test_one_api_one_engine(self) -> None:
        """As before: "etcd" and "MetaStore"."""
        columns = columns_of([(server("etcd", "v3"), "etcd", "", 0),
                              (server("MetaStore memory"), "MetaStore", "memory", 0)], ("seed",), ("memory",))
        self.assertEqual([(c.name, c.server.api) for c in columns], [("etcd", "v3"), ("MetaStore", "seed")])

    def test_every_api_of_every_engine(self) -> None:
        """Each MetaStore cluster once per API; etcd once, through v3."""
        started = [(server("etcd", "v3"), "etcd", "", 0),
                   (server("MetaStore memory"), "MetaStore", "memory", 0),
                   (server("MetaStore rocksdb --workers 2"), "MetaStore", "rocksdb", 2)]
        columns = columns_of(started, ("seed", "v3"), ("memory", "rocksdb"))
        self.assertEqual([(c.name, c.server.api) for c in columns], [
            ("etcd", "v3"), ("MetaStore seed memory", "seed"), ("MetaStore v3 memory", "v3"),
            ("MetaStore seed rocksdb --workers 2", "seed"), ("MetaStore v3 rocksdb --workers 2", "v3")])
        self.assertIs(columns[1].server.processes, columns[2].server.processes)  # one cluster, two columns


class BaselineTests(SynchronousTestCase):
    """``--baseline`` runs the other checkout on every engine measured."""

    def test_baseline_per_engine(self) -> None:
        """With rocksdb measured, the baseline runs on rocksdb too (a
        memory baseline would say nothing about a RocksDB change)."""
        started_clusters = []

        def fake_metastore(workdir, size, workers=0, *, storage="memory", checkout=None, name=None, **_):
            started_clusters.append((name, storage, checkout))
            return server(name or "MetaStore")

        with mock.patch("metastore.bench.compare.start_etcd", lambda *a: server("etcd", "v3")), \
                mock.patch("metastore.bench.compare.start_metastore", fake_metastore), \
                mock.patch("metastore.bench.compare.wait_for", lambda url: None):
            servers = compare_module._start("/w", "etcd", 1, (0,), ("memory", "rocksdb"), "/base", [])
        base = os.path.abspath("/base")
        self.assertEqual(started_clusters[:2], [("baseline", "memory", base), ("baseline rocksdb", "rocksdb", base)])
        columns = columns_of(servers, ("seed",), ("memory", "rocksdb"))
        self.assertIn("baseline rocksdb", [c.name for c in columns])


class FigureTests(SynchronousTestCase):
    """The median run, the table and the JSON."""

    def setUp(self) -> None:
        self.columns = [Column(server("etcd", "v3"), "etcd", "", 0),
                        Column(server("MetaStore seed"), "MetaStore", "memory", 0),
                        Column(server("MetaStore v3", "v3"), "MetaStore", "memory", 0)]
        rates = {"etcd": (900, 1000, 1100), "MetaStore seed": (500, 700, 600), "MetaStore v3": (450, 400, 420)}
        self.figures = {("put, 64 clients", name): Figure.median_of([run_document(r) for r in runs])
                        for name, runs in rates.items()}

    def test_median(self) -> None:
        """The median run by requests/s; CPU and RSS summed over the processes; every run kept in order."""
        figure = self.figures["put, 64 clients", "MetaStore seed"]
        self.assertEqual((figure.requests_per_second, figure.cpu_ms_per_1000, figure.rss_mb), (600, 120.0, 60.0))
        self.assertEqual(figure.runs, (500, 700, 600))

    def test_table_ratios_to_etcd(self) -> None:
        """One ratio per MetaStore column, to etcd's rate."""
        out = io.StringIO()
        print_table(self.figures, [c.name for c in self.columns], out, 1, [("put, 64 clients", [])])
        header, rule, row = out.getvalue().splitlines()
        self.assertIn("ratio MetaStore seed / MetaStore v3 / etcd", header)
        self.assertEqual(rule.count("|---"), 3 + 4)
        self.assertIn("| 1,000 (5.0) | 600 (5.0) | 420 (5.0) | 0.60 / 0.42 | 120 / 120 / 120 | 60 / 60 / 60 |", row)

    def test_json_rows(self) -> None:
        """A row per workload and column, with what the plot and the table need."""
        document = figures_as_json(self.figures, self.columns, 3, [("put, 64 clients", ["put", "--clients", "64"])],
                                   (1.5, 2.5))
        self.assertEqual((document["members"], document["load_average"]), (3, [1.5, 2.5]))
        self.assertEqual(document["columns"], ["etcd", "MetaStore seed", "MetaStore v3"])
        row = document["rows"][2]
        self.assertEqual({k: row[k] for k in ("workload", "kind", "clients", "column", "api", "storage")},
                         {"workload": "put, 64 clients", "kind": "put", "clients": 64, "column": "MetaStore v3",
                          "api": "v3", "storage": "memory"})
        self.assertEqual((row["requests_per_second"], row["runs_requests_per_second"]), (420, [450, 400, 420]))

    def test_every_runs_p99_kept(self) -> None:
        """The median run's p99 is the figure's; every run's p99 is kept, in order, in the JSON too."""
        figure = Figure.median_of([run_document(500, 30.0), run_document(700, 12.5), run_document(600, 20.0)])
        self.assertEqual((figure.p99_ms, figure.runs_p99_ms), (20.0, (30.0, 12.5, 20.0)))
        document = figures_as_json({("put, 64 clients", "etcd"): figure}, self.columns[:1], 1,
                                   [("put, 64 clients", ["put", "--clients", "64"])], (1.0, 1.0))
        self.assertEqual(document["rows"][0]["runs_p99_ms"], [30.0, 12.5, 20.0])


SWEEP = {"settings": {"runs": 1, "duration": 2, "cores": 2}, "sizes": [
    {"members": 1, "rows": [
        {"kind": "put", "clients": 64, "column": "etcd", "requests_per_second": 900.0},
        {"kind": "put", "clients": 1, "column": "etcd", "requests_per_second": 300.0},
        {"kind": "put", "clients": 1, "column": "MetaStore", "requests_per_second": 200.0},
        {"kind": "put", "clients": 64, "column": "MetaStore", "requests_per_second": 700.0},
        {"kind": "serializable get", "clients": 1, "column": "etcd", "requests_per_second": 400.0},
    ]},
    {"members": 3, "rows": [{"kind": "put", "clients": 1, "column": "etcd", "requests_per_second": 100.0}]},
]}


class PlotTests(SynchronousTestCase):
    """Throughput against clients."""

    def test_series(self) -> None:
        """Per (members, kind), per column, points sorted by clients."""
        series = throughput_series(SWEEP)
        self.assertEqual(list(series), [(1, "put"), (1, "serializable get"), (3, "put")])
        self.assertEqual(series[1, "put"], {"etcd": [(1, 300.0), (64, 900.0)], "MetaStore": [(1, 200.0), (64, 700.0)]})
        self.assertEqual(series[3, "put"], {"etcd": [(1, 100.0)]})

    def test_png(self) -> None:
        """A PNG file is written (with matplotlib installed)."""
        try:
            pyplot()
        except PlottingUnavailable:
            raise SkipTest("matplotlib is not installed")
        path = self.mktemp() + ".png"
        plot_throughput(SWEEP, path)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertRaises(ValueError, plot_throughput, {"sizes": []}, path)

    def test_without_matplotlib(self) -> None:
        """Without matplotlib: PlottingUnavailable saying how to install it."""
        with mock.patch.dict(sys.modules, {"matplotlib": None}):
            with self.assertRaises(PlottingUnavailable) as raised:
                plot_throughput(SWEEP, os.devnull)
        self.assertIn("pip install 'metastore[plot]'", str(raised.exception))


class SoakTests(SynchronousTestCase):
    """The RSS soak's slope and table."""

    def test_slope(self) -> None:
        """MB per minute by least squares, over the samples from ``since`` on."""
        growing = [(t, 50 + t / 60 * 3) for t in range(0, 600, 10)]  # 3 MB per minute
        self.assertAlmostEqual(slope_mb_per_minute(growing), 3.0)
        warm_then_flat = [(t, 50 + min(t, 120) / 6) for t in range(0, 600, 10)]
        self.assertAlmostEqual(slope_mb_per_minute(warm_then_flat, since_seconds=120), 0.0)
        self.assertGreater(slope_mb_per_minute(warm_then_flat), 0.5)
        self.assertIsNone(slope_mb_per_minute([(0, 1.0), (10, 2.0)], since_seconds=5))
        self.assertIsNone(slope_mb_per_minute([(5, 1.0), (5, 2.0)]))

    def test_table(self) -> None:
        """Samples side by side, then each server's rates, RSS and slope."""
        series = [RssSeries("etcd", 3000, 2100, [(0, 40.0), (10, 60.0), (20, 80.0)], 2050, 9.5),
                  RssSeries("MetaStore", 1500, 1050, [(0, 70.0), (10, 71.0), (20, 71.0)], 1040, 20.25)]
        lines = format_soak(series, 0).splitlines()
        self.assertEqual(lines[0], "| seconds | etcd RSS MB | MetaStore RSS MB |")
        self.assertEqual(lines[3], "| 10 | 60.0 | 71.0 |")
        self.assertIn("| etcd | 3,000 | 2,100 | 2,050 (9.5) | 40.0 / 80.0 / 80.0 | +120.00 |", lines)
        self.assertIn("| MetaStore | 1,500 | 1,050 | 1,040 (20.2) | 70.0 / 71.0 / 71.0 | +3.00 |", lines)


class MemoryAfterPutsTests(SynchronousTestCase):
    """The 1,000,000-put memory script's readings."""

    def test_settled_rss(self) -> None:
        """RSS is read once it moves by no more than half a MB in a second,
        or the last reading at the deadline; the clock is fake."""
        now = [0.0]
        readings = iter([70.0, 80.0, 84.0, 84.3, 99.0])
        settled = settled_rss_mb(1, 30.0, reading=lambda pid, field: next(readings), clock=lambda: now[0],
                                 pause=lambda s: now.__setitem__(0, now[0] + s))
        self.assertEqual((settled, now[0]), (84.3, 3.0))
        growing = iter(range(0, 1000, 10))
        settled = settled_rss_mb(1, 5.0, reading=lambda pid, field: float(next(growing)), clock=lambda: now[0],
                                 pause=lambda s: now.__setitem__(0, now[0] + s))
        self.assertEqual(settled, 60.0)  # six pauses: past the 5 s deadline

    def test_status_and_directory(self) -> None:
        """This process's RSS is read; a process that has gone reads 0; a directory's files are summed."""
        self.assertGreater(read_status_mb(os.getpid(), "VmRSS"), 1)
        self.assertEqual(read_status_mb(2**22 + 1, "VmRSS"), 0.0)
        path = self.mktemp()
        os.makedirs(os.path.join(path, "sub"))
        for name, size in (("a", 2**20), ("sub/b", 2**19)):
            with open(os.path.join(path, name), "wb") as f:
                f.write(b"x" * size)
        self.assertEqual(directory_mb(path), 1.5)
