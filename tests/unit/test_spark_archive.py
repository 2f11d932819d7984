"""The Spark driver's class-data archive: keyed by what the JVM loads, recorded once, then used."""

from pathlib import Path

from lakehouse.settings import load_settings
from lakehouse.spark import _archive_options, class_archive


def _jdk(tmp_path: Path) -> Path:
    home = tmp_path / "jdk"
    home.mkdir()
    (home / "release").write_text('JAVA_VERSION="17.0.16"\n')
    return home


def test_archive_key_follows_the_jdk_and_the_jars(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_CACHE_DIR", str(tmp_path / "cache"))
    settings = load_settings()
    jar = tmp_path / "iceberg.jar"
    jar.write_bytes(b"x" * 10)
    home = _jdk(tmp_path)
    first = class_archive(settings, home, [jar])
    assert first.parent == tmp_path / "cache" / "spark-cds"
    assert class_archive(settings, home, [jar]) == first
    jar.write_bytes(b"x" * 11)  # another jar build: another archive
    assert class_archive(settings, home, [jar]) != first
    (home / "release").write_text('JAVA_VERSION="17.0.17"\n')  # another JDK: another archive
    jar.write_bytes(b"x" * 10)
    assert class_archive(settings, home, [jar]) != first


def test_first_session_records_later_sessions_map(tmp_path):
    archive = tmp_path / "spark-cds" / "driver-abc.jsa"
    options, recording = _archive_options(archive)
    assert recording is not None and recording.parent == archive.parent
    assert recording.name.startswith(archive.name) and recording.name.endswith(".part")
    assert f"-XX:ArchiveClassesAtExit={recording}" in options
    archive.write_bytes(b"")  # an empty file (a crash mid-dump) is not an archive
    assert _archive_options(archive)[1] is not None
    archive.write_bytes(b"CDS")
    options, recording = _archive_options(archive)
    assert recording is None and f"-XX:SharedArchiveFile={archive}" in options
