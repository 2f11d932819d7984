"""Superset 6.1 configuration for the lakehouse.

Loaded by Superset through SUPERSET_CONFIG_PATH=<repo>/conf/superset/superset_config.py.
Everything variable comes from the environment (the project's .env); this file holds
no secret. A missing required variable stops Superset at start with a clear message.

Required:
    LAKEHOUSE_SUPERSET_SECRET_KEY    signs sessions/JWTs, encrypts stored DB passwords
    LAKEHOUSE_SUPERSET_DB_USER       metadata DB role
    LAKEHOUSE_SUPERSET_DB_PASSWORD   its password (URL-quoted here)
    LAKEHOUSE_POSTGRES_HOST          metadata DB host
    LAKEHOUSE_POSTGRES_PORT          metadata DB port
    LAKEHOUSE_SUPERSET_DB            metadata DB name
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import sys
from urllib.parse import quote

from superset.utils.logging_configurator import LoggingConfigurator

_REQUIRED = (
    "LAKEHOUSE_SUPERSET_SECRET_KEY",
    "LAKEHOUSE_SUPERSET_DB_USER",
    "LAKEHOUSE_SUPERSET_DB_PASSWORD",
    "LAKEHOUSE_POSTGRES_HOST",
    "LAKEHOUSE_POSTGRES_PORT",
    "LAKEHOUSE_SUPERSET_DB",
)
_missing = [name for name in _REQUIRED if not os.environ.get(name)]
if _missing:
    # SystemExit rather than an exception: Superset imports this module while building
    # its config, and a plain message is clearer than a traceback through config.py.
    raise SystemExit(
        "superset_config.py: missing required environment variable(s): "
        + ", ".join(_missing)
        + " (set them in the project's .env, see .env.example)"
    )

_env = os.environ

# ---------------------------------------------------------------------------------------
# Secrets and metadata database
# ---------------------------------------------------------------------------------------
SECRET_KEY = _env["LAKEHOUSE_SUPERSET_SECRET_KEY"]

SQLALCHEMY_DATABASE_URI = "postgresql+psycopg2://{user}:{password}@{host}:{port}/{db}".format(
    user=quote(_env["LAKEHOUSE_SUPERSET_DB_USER"], safe=""),
    password=quote(_env["LAKEHOUSE_SUPERSET_DB_PASSWORD"], safe=""),
    host=_env["LAKEHOUSE_POSTGRES_HOST"],
    port=int(_env["LAKEHOUSE_POSTGRES_PORT"]),
    db=quote(_env["LAKEHOUSE_SUPERSET_DB"], safe=""),
)
# Drop dead pooled connections (metadata PostgreSQL restarts under `make down/up`).
SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}

# No example data: examples are only loaded by `superset load-examples` (never run here;
# `superset init` does not load them). SQLALCHEMY_EXAMPLES_URI is left at its unused
# sqlite default on purpose: pointing it at the metadata DB would expose that DB to
# SQL Lab if examples were ever loaded.

# ---------------------------------------------------------------------------------------
# Caches. No Redis in this stack.
# ---------------------------------------------------------------------------------------
# Superset objects (dashboard/chart metadata) and query results/chart data: never cached,
# so a chart request always runs its query on Trino (we benchmark Superset against Trino).
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
# Thumbnails are off (feature flag below); keep their cache inert too.
THUMBNAIL_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
# FILTER_STATE_CACHE_CONFIG and EXPLORE_FORM_DATA_CACHE_CONFIG are deliberately left at
# Superset's default, SupersetMetastoreCache: it stores dashboard filter state and explore
# form data in the metadata DB's key_value table (no Redis needed). They are application
# state, not result caches, and a NullCache there breaks explore permalinks/filter state.
# RESULTS_BACKEND stays None: it is only used by async SQL Lab (Celery), which is off.

# ---------------------------------------------------------------------------------------
# Feature flags
# ---------------------------------------------------------------------------------------
# Dashboard native filters need no flag in 6.1 (DASHBOARD_NATIVE_FILTERS was removed in
# 4.0; native filters are always on). Everything below restates or tightens a default.
FEATURE_FLAGS = {
    "ENABLE_TEMPLATE_PROCESSING": False,  # no Jinja in SQL
    "ALERT_REPORTS": False,  # needs Celery + a headless browser
    "THUMBNAILS": False,  # needs Celery + a headless browser
    "GLOBAL_ASYNC_QUERIES": False,  # needs Redis
    "PLAYWRIGHT_REPORTS_AND_THUMBNAILS": False,
    "ENABLE_DASHBOARD_SCREENSHOT_ENDPOINTS": False,
    "ENABLE_DASHBOARD_DOWNLOAD_WEBDRIVER_SCREENSHOT": False,
    "SSH_TUNNELING": False,
    "EMBEDDED_SUPERSET": False,
    "DYNAMIC_PLUGINS": False,  # would load chart plugins from remote URLs
    "SLACK_ENABLE_AVATARS": False,  # would load images from slack-edge.com
    "ENABLE_FACTORY_RESET_COMMAND": False,
}

# ---------------------------------------------------------------------------------------
# Web server / security
# ---------------------------------------------------------------------------------------
# CSRF stays on (Superset's default). Superset already exempts POST /api/v1/chart/data;
# other JSON API POSTs (e.g. /api/v1/assets/import/) need a CSRF token even with a JWT:
# scripts GET /api/v1/security/csrf_token/ (bearer) and send X-CSRFToken + the session
# cookie of that response. We keep that rather than widening WTF_CSRF_EXEMPT_LIST.
WTF_CSRF_ENABLED = True

# Rate limiting (Flask-Limiter, per client address): on, whatever SUPERSET_ENV says.
# Logins are limited to 10 a minute per gunicorn worker, which stops password guessing and
# never bites a person or the platform (the tests and benchmarks log in once per session).
# All other requests: Superset's default, 50 a second. Counters live in each worker's
# memory (no Redis here), so they reset when Superset restarts.
RATELIMIT_ENABLED = True
RATELIMIT_STORAGE_URI = "memory://"
RATELIMIT_APPLICATION = "50 per second"
AUTH_RATE_LIMITED = True
AUTH_RATE_LIMIT = "10 per minute"

# Superset 6.1 wires AUTH_RATE_LIMIT to the login form's blueprint only if that blueprint
# exists when its security manager registers the views, and here it does not: seen on this
# stack, 30 wrong passwords in a row got 30 answers, through the form and through the
# security API that scripts use. So the limit is applied here, to both, through the same
# `limits` library Flask-Limiter runs on.
from limits import parse as _parse_limit, storage as _limit_storage, strategies as _limit_strategies  # noqa: E402

_API_LOGIN_LIMIT = _parse_limit(AUTH_RATE_LIMIT)
_API_LOGIN_WINDOW = _limit_strategies.MovingWindowRateLimiter(_limit_storage.MemoryStorage())


def FLASK_APP_MUTATOR(app) -> None:  # noqa: N802 - Superset's name for this hook
    """Refuse a login attempt (form or API) beyond AUTH_RATE_LIMIT per client address."""
    from flask import jsonify, request

    @app.before_request
    def _limit_api_login():
        if request.method == "POST" and request.path.rstrip("/") in ("/login", "/api/v1/security/login",
                                                                      "/api/v1/security/refresh"):
            if not _API_LOGIN_WINDOW.hit(_API_LOGIN_LIMIT, "api-login", request.remote_addr or "-"):
                return jsonify(message=f"too many login attempts from this address (limit: {AUTH_RATE_LIMIT}); "
                                       "try again in a minute"), 429
        return None

# The frontend aborts a request after this many seconds; match gunicorn's --timeout 120
# so slow Trino queries are not cut off by the browser first (Superset's default: 60).
SUPERSET_WEBSERVER_TIMEOUT = 120

# Talisman/CSP: Superset's defaults work on plain http://127.0.0.1 (force_https and
# session_cookie_secure are already False). The only change: drop the Scarf telemetry
# hosts from img-src, so the browser blocks the usage pixel the UI would otherwise fetch
# from apachesuperset.gateway.scarf.sh (the pixel is compiled into the 6.1.0 bundle).
_defaults = importlib.import_module("superset.config")  # Superset's defaults, already loaded


def _without_scarf(talisman: dict) -> dict:
    result = copy.deepcopy(talisman)
    csp = result.get("content_security_policy", {})
    csp["img-src"] = [src for src in csp.get("img-src", []) if "scarf.sh" not in src]
    return result


TALISMAN_ENABLED = True
TALISMAN_CONFIG = _without_scarf(_defaults.TALISMAN_CONFIG)
TALISMAN_DEV_CONFIG = _without_scarf(_defaults.TALISMAN_DEV_CONFIG)

# ---------------------------------------------------------------------------------------
# Logging: INFO to stdout (Superset's default configurator logs to stderr).
# ---------------------------------------------------------------------------------------
LOG_LEVEL = logging.INFO
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StdoutLoggingConfigurator(LoggingConfigurator):
    def configure_logging(self, app_config, debug_mode) -> None:  # type: ignore[no-untyped-def]
        root = logging.getLogger()
        if not any(getattr(h, "_lakehouse_stdout", False) for h in root.handlers):
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter(app_config["LOG_FORMAT"]))
            handler._lakehouse_stdout = True  # type: ignore[attr-defined]
            root.addHandler(handler)
        root.setLevel(app_config["LOG_LEVEL"])
        if app_config["SILENCE_FAB"]:
            logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
        logging.captureWarnings(True)


LOGGING_CONFIGURATOR = StdoutLoggingConfigurator()
