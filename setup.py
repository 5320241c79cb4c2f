"""Packaging for MetaStore.

The ``twisted.plugins`` entry makes ``twistd metastore`` work from a regular
``pip install .``; the plugin module is a single ``ServiceMaker``.
"""

from setuptools import find_packages, setup

setup(
    name="metastore",
    version="0.1.0",
    description="A lightweight, strongly consistent, replicated metadata store",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["metastore", "metastore.*"]) + ["twisted.plugins"],
    include_package_data=True,
    install_requires=[
        "twisted>=23.8.0",
        "klein>=23.5.0",
        "sortedcontainers>=2.4.0",
        "rocksdict>=0.3.20",
        "msgpack>=1.0.5",
        "treq>=23.11.0",
        "prometheus_client>=0.17.0",
        "httptools>=0.6.0",
        # The v3 JSON API parses request bodies and writes txn answers with it.
        "orjson>=3.9.0",
        # The committed *_pb2 modules check these at import: grpcio-tools
        # 1.85.1 generated them (make protos).
        "grpcio>=1.85.1",
        "protobuf>=7.35.1",
        # The blocking client (metastore.client.sync) and metastorectl.
        "urllib3>=2.3.0",
        "click>=8.1.0",
        # TLS on the client, gRPC and peer ports (metastore/security/):
        # Twisted's TLS needs pyOpenSSL and service_identity.
        "pyOpenSSL>=24.0.0",
        "service_identity>=24.1.0",
        "cryptography>=42.0.0",
        # JWT auth tokens (--auth-token jwt,...); cryptography for RS256.
        "PyJWT[crypto]>=2.8.0",
    ],
    extras_require={
        "test": [
            "hypothesis>=6.80.0",
            "grpcio-tools>=1.85.1",
            "etcd3gw>=2.7.0",
            # Real clients the v3 JSON API is held to (tests/api/test_tooz.py,
            # test_patroni.py); Patroni imports psycopg at import time, and the
            # binary wheel brings its own libpq.
            "tooz>=9.1.0",
            "patroni[etcd3]>=4.1.5",
            "psycopg2-binary>=2.9.13",
            # python-etcd3, a gRPC client (tests/test_grpc_etcd3_client.py).
            "etcd3>=0.12.0",
            # The dashboard test drives Debian's chromium (never a browser
            # Playwright downloads); the OpenAPI document is checked live.
            "playwright>=1.65.2",
            "schemathesis>=4.32.5",
        ],
        "docs": ["mkdocs>=1.6.1"],
        # The PNGs of scripts/plot-throughput.py and scripts/rss-soak.py.
        "plot": ["matplotlib>=3.8.0"],
    },
    package_data={
        "metastore.api.grpc.proto": ["*.proto", "*.pyi"],
        # The web dashboard at /ui (metastore.api.dashboard): served as shipped.
        "metastore.api": ["ui/*.html", "ui/*.js", "ui/*.css", "ui/*.svg"],
    },
    entry_points={
        "console_scripts": [
            "metastore = metastore.cli:main",
            "metastore-chaos = metastore.chaos.cli:main",
            "metastore-bench = metastore.bench.cli:main",
            "metastorectl = metastore.ctl.cli:main",
        ]
    },
)
