"""Fetching a batch from a real local HTTP server: retries, backoff, clear errors."""

import time
from http.server import BaseHTTPRequestHandler

import pytest

from lakehouse.contracts.model import Auth, Contract
from lakehouse.ingest.fetch import FetchError, endpoint_headers, endpoint_url, fetch
from tests.local_http import serve

OK = b'{"group_number": 1, "batch_number": 1, "data": [1]}'


class Api(BaseHTTPRequestHandler):
    calls: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        Api.calls[path] = Api.calls.get(path, 0) + 1
        n = Api.calls[path]
        if path == "/always-500/data":
            self.send_response(500)
            self.end_headers()
            return
        if path == "/flaky/data" and n <= 2:
            self.send_response(503)
            self.end_headers()
            return
        if path == "/slow/data":
            time.sleep(1.5)
        if path == "/cut/data":
            self.send_response(200)
            self.send_header("Content-Length", str(len(OK) * 3))
            self.end_headers()
            self.wfile.write(OK)
            self.close_connection = True
            return
        if path == "/keyed/data" and self.headers.get("X-API-Key") != "s3cret":
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b"bad key")
            return
        if path == "/missing/data":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"no such source")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(OK)))
        self.end_headers()
        self.wfile.write(OK)


@pytest.fixture(scope="module")
def api():
    with serve(Api) as url:
        yield url


def _fetch(api, path, **kw):
    kw.setdefault("attempts", 3)
    kw.setdefault("backoff", 0.01)
    return fetch(api + path, 1, source="network_a", **kw)


def test_ok_and_group_number_sent(api):
    got = _fetch(api, "/ok/data")
    assert got.body == OK and "group_number=1" in got.url and len(got.checksum) == 64


def test_transient_5xx_is_retried(api):
    Api.calls.clear()
    assert _fetch(api, "/flaky/data").body == OK
    assert Api.calls["/flaky/data"] == 3


def test_persistent_500_fails_with_source_group_and_attempts(api):
    Api.calls.clear()
    with pytest.raises(FetchError, match=r"network_a group 1: GET .*/always-500/data failed after 3 attempts: HTTP 500"):
        _fetch(api, "/always-500/data")
    assert Api.calls["/always-500/data"] == 3


def test_timeout(api):
    with pytest.raises(FetchError, match="timed out after 0.3s"):
        _fetch(api, "/slow/data", timeout=0.3, attempts=2)


def test_truncated_body(api):
    with pytest.raises(FetchError, match="body cut short"):
        _fetch(api, "/cut/data", attempts=2)


def test_api_down(api):
    with pytest.raises(FetchError, match="connection failed") as err:
        fetch("http://127.0.0.1:9/data", 1, source="network_b", attempts=2, backoff=0.01)
    assert "is the batch API up?" in str(err.value)


def test_client_error_is_not_retried(api):
    Api.calls.clear()
    with pytest.raises(FetchError, match="HTTP 404: no such source"):
        _fetch(api, "/missing/data")
    assert Api.calls["/missing/data"] == 1


def _keyed_contract(base_url=None) -> Contract:
    from lakehouse.contracts import load_all

    c = load_all()["network_a"]
    return c.model_copy(update={"id": "forest", "source": c.source.model_copy(update={
        "base_url": base_url, "path": "/keyed/data",
        "auth": Auth(header="X-API-Key", env="LAKEHOUSE_SOURCE_TEST_FOREST_KEY")})})


def test_endpoint_auth_header_comes_from_the_environment(api, monkeypatch, tmp_path):
    """The contract names the variable; its value is sent, and a wrong one is a clear error
    naming the source and the header."""
    c = _keyed_contract(base_url=api)
    assert endpoint_url(object(), c) == f"{api}/keyed/data"   # the contract's own base URL wins
    monkeypatch.setenv("LAKEHOUSE_SOURCE_TEST_FOREST_KEY", "s3cret")
    assert _fetch(api, "/keyed/data", headers=endpoint_headers(c)).body == OK
    monkeypatch.setenv("LAKEHOUSE_SOURCE_TEST_FOREST_KEY", "wrong")
    with pytest.raises(FetchError) as err:
        _fetch(api, "/keyed/data", headers=endpoint_headers(c))
    assert "network_a: GET" in str(err.value) and "answered HTTP 401: the API refused the credentials in the " \
        "X-API-Key header: bad key" in str(err.value)
    assert "nothing was written" in str(err.value)


def test_endpoint_auth_variable_not_set(monkeypatch, tmp_path):
    monkeypatch.delenv("LAKEHOUSE_SOURCE_TEST_FOREST_KEY", raising=False)
    monkeypatch.setenv("LAKEHOUSE_ENV_FILE", str(tmp_path / "none.env"))
    with pytest.raises(FetchError) as err:
        endpoint_headers(_keyed_contract())
    assert "forest: the contract's endpoint.auth names the environment variable LAKEHOUSE_SOURCE_TEST_FOREST_KEY for " \
           "its X-API-Key header, and LAKEHOUSE_SOURCE_TEST_FOREST_KEY is not set" in str(err.value)
    env = tmp_path / "stack.env"
    env.write_text("LAKEHOUSE_SOURCE_TEST_FOREST_KEY=from-file\n")
    monkeypatch.setenv("LAKEHOUSE_ENV_FILE", str(env))
    assert endpoint_headers(_keyed_contract()) == {"X-API-Key": "from-file"}
