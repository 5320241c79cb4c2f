# MetaStore: the original's targets, plus `test` and `bench`.
# Everything installs into .venv with a regular `pip install .`, so that
# `twistd metastore` finds its plugin exactly as users get it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SOURCES := setup.py $(shell find metastore twisted -name '*.py' 2>/dev/null)
RUN_DIR := run
CLUSTER := http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379
# Skipped under the default reactor, so run again on the asyncio reactor.
ASYNCIO_TESTS := tests.api.grpc.test_server tests.api.grpc.test_servicers tests.api.grpc.test_watch_servicer tests.api.grpc.test_lease_servicer tests.api.grpc.test_auth_servicer
# The reliability tests, run by `make test-workers` with every member process on --workers 2.
WORKERS_TESTS := tests.test_single_node_process tests.test_cluster_process tests.test_disk_faults \
  tests.test_reconfig_process tests.test_poison_entries_process tests.test_hostile_peer tests.test_rocksdb_member \
  tests.snapshots tests.api.v3.test_cluster_process tests.api.test_etcd3gw tests.api.test_tooz tests.api.test_patroni \
  tests.test_etcdctl_process tests.test_grpc_etcdctl tests.test_auth_etcdctl tests.test_auth_revoke_process \
  tests.api.test_rest_auth tests.client.test_ctl_process \
  tests.client.test_client_process \
  tests.security.test_peer_security_process tests.chaos tests.workers

.DEFAULT_GOAL := help
.PHONY: help build run run-memory run-rocksdb cluster-memory cluster-rocksdb _cluster stop-cluster test test-workers bench protos clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed; install Python 3's venv module (Debian: apt-get install python3-venv)"; exit 1; }
	@$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install --quiet ".[test,docs]"
	@touch $(STAMP)

build: $(STAMP) ## Create .venv and install MetaStore into it

run: run-memory ## Start one member on port 12380 (memory engine), in the foreground

run-memory: $(STAMP) ## Start one member with the memory engine, in the foreground
	$(BIN)/twistd --nodaemon --pidfile= metastore --id 1 --cluster http://127.0.0.1:12379 --port 12380 --storage memory

run-rocksdb: $(STAMP) ## Start one member with the RocksDB engine, in the foreground (data in data/1/)
	$(BIN)/twistd --nodaemon --pidfile= metastore --id 1 --cluster http://127.0.0.1:12379 --port 12380 --storage rocksdb

cluster-memory: $(STAMP) ## Start the 3-member example in the background (HTTP ports 12380, 22380, 32380)
	@$(MAKE) --no-print-directory _cluster STORAGE=memory

cluster-rocksdb: $(STAMP) ## The same 3-member example on the RocksDB engine
	@$(MAKE) --no-print-directory _cluster STORAGE=rocksdb

_cluster:
	@mkdir -p $(RUN_DIR)
	@for i in 1 2 3; do \
	  $(BIN)/twistd --pidfile=$(RUN_DIR)/metastore-$$i.pid --logfile=$(RUN_DIR)/metastore-$$i.log \
	    metastore --id $$i --cluster $(CLUSTER) --port $${i}2380 --storage $(STORAGE) \
	  && echo "member $$i ($(STORAGE)): http://127.0.0.1:$${i}2380 (log $(RUN_DIR)/metastore-$$i.log)"; \
	done

stop-cluster: ## Stop exactly the members started by cluster-memory / cluster-rocksdb
	@for f in $(RUN_DIR)/metastore-*.pid; do \
	  [ -f "$$f" ] || continue; pid=$$(cat "$$f"); \
	  kill "$$pid" 2>/dev/null && echo "stopping $$f ($$pid)"; \
	  for t in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$$pid" 2>/dev/null || break; sleep 0.5; done; \
	  rm -f "$$f"; \
	done; true

test: $(STAMP) ## Run the whole test suite with trial, then the tests that need the asyncio reactor on it
	$(BIN)/python -m twisted.trial --jobs=2 tests
	$(BIN)/python -m twisted.trial --reactor=asyncio $(ASYNCIO_TESTS)

test-workers: $(STAMP) ## The reliability tests (process, fault, snapshot, membership, chaos, client) with members on --workers 2, one module at a time
	@status=0; for m in $(WORKERS_TESTS); do \
	  METASTORE_TEST_WORKERS=2 $(BIN)/python -m twisted.trial $$m || status=1; \
	done; exit $$status

bench: $(STAMP) ## Benchmark a running member: make bench URL=http://127.0.0.1:12380
	$(BIN)/python -m metastore.bench put --endpoints $(or $(URL),http://127.0.0.1:12380)

protos: $(STAMP) ## Regenerate metastore/api/grpc/proto/*_pb2*.py from the .proto files (commit the result)
	$(BIN)/python -m metastore.api.grpc.codegen

clean: ## Remove the virtual environment, build files and local data
	rm -rf $(VENV) build dist *.egg-info _trial_temp* metaStore-* data $(RUN_DIR)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
