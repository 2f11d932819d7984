"""Find a JDK of the right major version. Trino and Spark need different ones."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lakehouse.errors import PreflightError

JVM_ROOT = Path("/usr/lib/jvm")


@dataclass(frozen=True)
class JavaRequirement:
    who: str
    min_major: int
    max_major: int | None = None  # inclusive
    setting: str = ""

    def accepts(self, major: int) -> bool:
        return major >= self.min_major and (self.max_major is None or major <= self.max_major)

    def describe(self) -> str:
        if self.max_major is None:
            return f"Java {self.min_major}+"
        return f"Java {self.min_major}-{self.max_major}"


# Trino 476 refuses to start below Java 24. Spark 4.1's Hadoop client breaks on Java 25
# (`getSubject is not supported`), so Spark gets 17 or 21.
TRINO_JAVA = JavaRequirement("Trino 476", 24, None, "LAKEHOUSE_TRINO_JAVA_HOME")
SPARK_JAVA = JavaRequirement("Spark 4.1", 17, 21, "LAKEHOUSE_SPARK_JAVA_HOME")


def java_major(home: Path) -> int | None:
    """Major version of the JDK at `home`, from its `release` file or `java -version`."""
    release = home / "release"
    if release.is_file():
        m = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(errors="replace"), re.M)
        if m:
            return int(m.group(1))
    java = home / "bin" / "java"
    if not java.exists():
        return None
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    m = re.search(r'version "(\d+)', out.stderr + out.stdout)
    return int(m.group(1)) if m else None


def find_java(req: JavaRequirement, configured: Path | None) -> Path:
    """The configured JDK if it fits, else the newest fitting JDK under /usr/lib/jvm."""
    if configured is not None:
        if not (configured / "bin" / "java").exists():
            raise PreflightError(
                f"{req.setting}={configured}: no bin/java there ({req.who} needs {req.describe()})",
                f"point {req.setting} at a JDK home, or leave it empty to auto-detect")
        major = java_major(configured)
        if major is None or not req.accepts(major):
            raise PreflightError(
                f"{req.setting}={configured} is Java {major}; {req.who} needs {req.describe()}",
                f"install {req.describe()} and point {req.setting} at it")
        return configured
    found: list[tuple[int, Path]] = []
    if JVM_ROOT.is_dir():
        for home in sorted(JVM_ROOT.iterdir()):
            if home.is_symlink() or not (home / "bin" / "java").exists():
                continue
            major = java_major(home)
            if major is not None and req.accepts(major):
                found.append((major, home))
    if not found:
        raise PreflightError(
            f"no {req.describe()} found under {JVM_ROOT} ({req.who} needs it)",
            f"install one (e.g. a Temurin or Debian openjdk package) or set {req.setting}")
    return max(found)[1]
