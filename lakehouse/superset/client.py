"""A small client for Superset's REST API (login, CSRF, import, export, chart data).

Scope: talks HTTP to the stack's Superset only; every error names the endpoint, the
status and Superset's own message.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from lakehouse.errors import LakehouseError
from lakehouse.settings import Settings


class SupersetError(LakehouseError):
    """Superset refused or failed a request."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None):
        super().__init__(message, hint)
        self.status = status


class SupersetClient:
    def __init__(self, settings: Settings, user: str | None = None, password: str | None = None,
                 timeout: float = 120):
        self.base = settings.superset_url
        self.user = user or settings.superset_admin_user
        self.password = password if password is not None else (
            settings.superset_admin_password.get_secret_value() if self.user == settings.superset_admin_user
            else settings.superset_viewer_password.get_secret_value())
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: no proxies, no system CA override

    # ---- auth ---------------------------------------------------------------------------
    def login(self) -> "SupersetClient":
        """JWT for the API, plus the CSRF token Superset wants on every write."""
        resp = self.session.post(f"{self.base}/api/v1/security/login", timeout=self.timeout,
                                 json={"username": self.user, "password": self.password,
                                       "provider": "db", "refresh": False})
        if resp.status_code != 200:
            raise SupersetError(f"Superset login as {self.user!r} failed: HTTP {resp.status_code} {_message(resp)}",
                                "check LAKEHOUSE_SUPERSET_*_USER/_PASSWORD in .env; `make up` re-applies them",
                                resp.status_code)
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
        csrf = self.get("/api/v1/security/csrf_token/")["result"]
        self.session.headers.update({"X-CSRFToken": csrf, "Referer": self.base})
        return self

    # ---- plumbing -----------------------------------------------------------------------
    def request(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kw) -> requests.Response:
        try:
            resp = self.session.request(method, f"{self.base}{path}", timeout=self.timeout, **kw)
        except requests.RequestException as exc:
            raise SupersetError(f"Superset at {self.base} did not answer {method} {path}: {type(exc).__name__}",
                                "is it running? `make status`") from exc
        if resp.status_code not in expect:
            raise SupersetError(f"{method} {path}: HTTP {resp.status_code} {_message(resp)}",
                                status=resp.status_code)
        return resp

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw).json()

    def post(self, path: str, **kw) -> Any:
        return self.request("POST", path, **kw).json()

    # ---- assets -------------------------------------------------------------------------
    def import_assets(self, bundle: bytes, passwords: dict[str, str]) -> None:
        """POST /api/v1/assets/import/: databases, datasets, charts and dashboards, by UUID,
        overwriting what is there (so re-importing changes nothing)."""
        self.request("POST", "/api/v1/assets/import/",
                     files={"bundle": ("lakehouse_assets.zip", bundle, "application/zip")},
                     data={"passwords": json.dumps(passwords)})

    def export_assets(self) -> bytes:
        return self.request("GET", "/api/v1/assets/export/").content

    def list_all(self, resource: str, columns: list[str]) -> list[dict]:
        q = "(columns:!(" + ",".join(columns) + "),page_size:100)"
        return self.get(f"/api/v1/{resource}/", params={"q": q})["result"]

    def chart_data(self, query_context: dict, expect: tuple[int, ...] = (200,)) -> requests.Response:
        return self.request("POST", "/api/v1/chart/data", json=query_context, expect=expect)


def _message(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    return json.dumps(body.get("message") or body.get("errors") or body)[:600]
