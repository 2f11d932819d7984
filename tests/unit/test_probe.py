"""Health probes of contracts' own endpoints, and why a new source's DAG waits for one."""

import json
from http.server import BaseHTTPRequestHandler

import pytest

from lakehouse.contracts import load_all
from lakehouse.contracts.model import Auth
from lakehouse.ingest import probe
from tests.local_http import send, serve


class Api(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        if self.headers.get("X-API-Key") != "k":
            body, status = b"bad key", 401
        elif path == "/batch":
            body, status = json.dumps({"group_number": 1, "batch_number": 4, "data": [1]}).encode(), 200
        else:
            body, status = b"[]", 200
        send(self, status, body)


@pytest.fixture(scope="module")
def api():
    with serve(Api) as url:
        yield url


def _own(base_url, path="/batch"):
    c = load_all()["network_b"]
    return c.model_copy(update={"id": "forest", "source": c.source.model_copy(update={
        "base_url": base_url, "path": path, "auth": Auth(header="X-API-Key", env="LAKEHOUSE_SOURCE_PROBE_KEY")})})


def test_probe_answers_and_each_failure_says_why(api, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEHOUSE_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.delenv("LAKEHOUSE_SOURCE_PROBE_KEY", raising=False)
    ok, detail = probe.probe(settings, _own(api))
    assert not ok and "LAKEHOUSE_SOURCE_PROBE_KEY is not set" in detail
    monkeypatch.setenv("LAKEHOUSE_SOURCE_PROBE_KEY", "wrong")
    ok, detail = probe.probe(settings, _own(api))
    assert not ok and "answered HTTP 401: bad key" in detail
    monkeypatch.setenv("LAKEHOUSE_SOURCE_PROBE_KEY", "k")
    ok, detail = probe.probe(settings, _own(api, "/empty"))
    assert not ok and "without a batch envelope" in detail
    ok, detail = probe.probe(settings, _own(api))
    assert ok and detail.endswith("answered batch 4")
    ok, detail = probe.probe(settings, _own("http://127.0.0.1:9"), timeout=2)
    assert not ok and "ConnectionError" in detail


def test_a_new_sources_dag_waits_until_its_endpoint_answered(api, settings):
    own = _own(api)
    assert probe.waiting(settings, load_all()["network_b"]) is None  # the platform's API: not gated
    assert "paused until its endpoint" in probe.waiting(settings, own) and "not probed yet" in probe.waiting(
        settings, own)
    assert probe.record(settings, own, False, "GET ... failed") is False
    assert "failed" in probe.waiting(settings, own)
    assert probe.record(settings, own, True, "answered batch 4") is True
    assert probe.waiting(settings, own) is None
    assert probe.record(settings, own, False, "down for a while") is False
    assert probe.waiting(settings, own) is None  # answered once: a later outage does not pause it again
    assert probe.to_unpause(settings, [own, load_all()["network_b"]]) == [own]
    probe.unpaused(settings, own)
    assert probe.to_unpause(settings, [own]) == []  # unpaused once: a person's pause stands
