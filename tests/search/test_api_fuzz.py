"""Property-based API fuzzing: schemathesis generates requests from the server's own OpenAPI schema.

The real server (uvicorn) listens on 127.0.0.1 over a 24-product index; every route gets a bounded number
of schema-valid and schema-invalid requests (half of the product ids are real ones, so the 200 paths run
too).  Checks: no 5xx, every status documented, the documented media type, and bodies matching the
documented schema.  ``VITRINA_FUZZ_EXAMPLES`` raises the number of examples per route and mode.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")  # the `test` extra installs it

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis import checks  # noqa: E402

from conftest import open_built_engine, write_catalog  # noqa: E402
from search.web.app import create_app  # noqa: E402

EXAMPLES = int(os.environ.get("VITRINA_FUZZ_EXAMPLES", "25"))
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]
REAL_IDS = [None, "P000", "P007", "P013"]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory, tiny_encoder):
    import uvicorn

    catalog = write_catalog(tmp_path_factory.mktemp("fuzz-catalog"))
    with open_built_engine(tmp_path_factory.mktemp("fuzz") / "index", catalog, tiny_encoder) as engine:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "the server did not start"
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.mark.slow
def test_no_5xx_and_no_schema_violation_on_any_route(server_url):
    schema = schemathesis.openapi.from_url(f"{server_url}/openapi.json")
    statuses: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    for operation in (result.ok() for result in schema.get_all_operations()):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode), real=st.sampled_from(REAL_IDS),
                   n=st.integers(min_value=-1, max_value=2))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def call(case, real, n):
                if real and "product_id" in (case.path_parameters or {}):
                    case.path_parameters["product_id"] = real
                    if "n" in case.path_parameters and isinstance(case.path_parameters["n"], int):
                        case.path_parameters["n"] = n
                try:
                    response = case.call_and_validate(checks=CHECKS, timeout=60)
                    statuses[(operation.label, response.status_code)] += 1
                except BaseException as exc:  # noqa: BLE001 - schemathesis raises a FailureGroup: collected, shown below
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        raise
                    failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:2000]}")

            try:
                call()
            except Unsatisfiable:  # a route without parameters has no schema-invalid request to make
                assert mode is GenerationMode.NEGATIVE
    print(f"\n{sum(statuses.values())} requests: " + ", ".join(f"{label} {code}: {count}" for (label, code), count in sorted(statuses.items())))
    assert not failures, "\n\n".join(failures[:5])
    assert not [key for key in statuses if key[1] >= 500]
    assert {label for label, code in statuses if code == 200} >= {"POST /search/image", "GET /products/{product_id}",
                                                                    "GET /products/{product_id}/similar", "GET /healthz"}
