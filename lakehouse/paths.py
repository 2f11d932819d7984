"""Where the repository is. A leaf module: the settings and the service modules both read it."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF = REPO_ROOT / "conf"
