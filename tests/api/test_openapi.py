"""The REST API's OpenAPI document (``docs/api/openapi.yaml``) against a
live member: Schemathesis generates requests from the document, and every
answer must conform to it (status, content type, body schema, headers) and
never be a 5xx; afterwards the member must still commit and serve a write.

Membership changes (``POST``/``DELETE /admin/members/{id}``) are left out:
they would change the cluster under test.  The number of examples is
bounded (``MAX_EXAMPLES``) and a blocking read waits at most ``BLOCKING_WAIT``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.chaos.helpers import http_request, start_single_member
from tests.process import REPO_ROOT

OPENAPI = os.path.join(REPO_ROOT, "docs", "api", "openapi.yaml")
MAX_EXAMPLES = 250
BLOCKING_WAIT = "200ms"
LEFT_OUT = {"POST /admin/members/{id}", "DELETE /admin/members/{id}"}


def _load():
    """The document's operations and the checks every answer must pass, or
    None when Schemathesis is not installed."""
    try:
        import schemathesis
        from schemathesis.checks import not_a_server_error
        from schemathesis.specs.openapi import checks
    except ImportError:
        return None
    schema = schemathesis.openapi.from_path(OPENAPI)
    operations = [r.ok() for r in schema.get_all_operations()]
    conformance = [not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
                   checks.response_schema_conformance, checks.response_headers_conformance]
    return operations, conformance


class OpenAPIConformanceTests(SynchronousTestCase):
    """Generated requests against one real member."""

    def setUp(self):
        loaded = _load()
        if loaded is None:
            raise SkipTest("schemathesis is not installed (pip install schemathesis)")
        self.operations, self.checks = loaded
        self.member = start_single_member(self)

    def test_the_document_covers_the_rest_api(self):
        """Every key operation and operator endpoint is described."""
        labels = {op.label for op in self.operations}
        for label in ("GET /kv/{key}", "PUT /kv/{key}", "DELETE /kv/{key}", "GET /health", "GET /readyz",
                      "GET /livez", "GET /version", "GET /metrics", "GET /admin/status", "GET /admin/members",
                      "GET /admin/hashkv", "POST /admin/snapshot", *LEFT_OUT):
            self.assertIn(label, labels)

    def test_every_answer_conforms(self):
        """Answers to generated requests conform to the document; no 5xx;
        the member then still commits a put and serves it."""
        fuzzed = [op for op in self.operations if op.label not in LEFT_OUT]
        cases = st.one_of([op.as_strategy() for op in fuzzed])
        seen = set()

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def check(case):
            """One generated request: no 5xx, and the answer conforms."""
            if case.query and "index" in case.query:
                case.query["wait"] = BLOCKING_WAIT
            response = case.call(base_url=self.member.url, timeout=15)
            seen.add((case.operation.label, response.status_code))
            self.assertLess(response.status_code, 500, case.as_curl_command())
            case.validate_response(response, checks=self.checks)

        check()
        self.assertGreaterEqual(len({label for label, _ in seen}), len(fuzzed), seen)
        self.assertEqual(http_request(self.member.url + "/kv/after-openapi", "PUT", b"still here"), 204)
        self.assertEqual(http_request(self.member.url + "/kv/after-openapi", "GET"), 200)
        self.assertNotIn("Traceback", self.member.log_text())
