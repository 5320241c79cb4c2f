"""A member's Prometheus metrics, served at ``/metrics`` on its client port.

Names are etcd's where etcd has the metric (so etcd's dashboards and alerts
work), MetaStore's own under ``metastore_``.  Each member has a registry of
its own (several members may share a process).  Gauges are read from the
member at scrape time (``collector``), so the request path pays nothing for
them; durations are histograms observed where they happen (``measure``).
"""

from metastore.metrics.member import MemberMetrics, instrument

__all__ = ["MemberMetrics", "instrument"]
