"""Superset: runtime (venv, init, users), API client, and the assets in superset_assets/."""
