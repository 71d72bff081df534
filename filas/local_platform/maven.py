"""Fetch the JVM services from Maven Central with the ``mvn`` client the machine already has.

No Docker and no vendor download sites are reachable here: Maven Central is, so the broker's
classpath is a ``libs/`` folder that Maven fills from a tiny generated POM, and the registry is the
ready-to-run Quarkus tarball Apicurio publishes there. Both steps are idempotent: a marker file is
written only after a complete fetch, so a half-finished download is redone, never trusted.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from filas.errors import PlatformError

_MARKER = ".complete"
_TAIL_LINES = 40


@dataclass(frozen=True)
class Artifact:
    group: str
    name: str
    version: str


@dataclass(frozen=True)
class KafkaVersions:
    kafka: str
    log4j: str
    slf4j: str


def broker_artifacts(v: KafkaVersions) -> list[Artifact]:
    """The broker plus a logging binding.

    The Kafka POM brings log4j-core but no SLF4J binding, so the broker would log nothing; and
    slf4j-api 1.7.x arrives transitively, which the log4j-slf4j2 binding ignores, so 2.0.x is
    pinned explicitly (Maven's nearest-wins rule makes the direct declaration win).
    """
    return [
        Artifact("org.apache.kafka", "kafka_2.13", v.kafka),
        Artifact("org.apache.logging.log4j", "log4j-slf4j2-impl", v.log4j),
        Artifact("org.apache.logging.log4j", "log4j-core", v.log4j),
        Artifact("org.apache.logging.log4j", "log4j-api", v.log4j),
        Artifact("org.slf4j", "slf4j-api", v.slf4j),
    ]


def tools_artifacts(v: KafkaVersions) -> list[Artifact]:
    """Kafka's perf tools (ProducerPerformance, ...). Heavy (pulls connect-runtime): opt-in only."""
    return [
        Artifact("org.apache.kafka", "kafka-tools", v.kafka),
        Artifact("org.apache.logging.log4j", "log4j-slf4j2-impl", v.log4j),
        Artifact("org.apache.logging.log4j", "log4j-core", v.log4j),
        Artifact("org.slf4j", "slf4j-api", v.slf4j),
    ]


def render_pom(project: str, artifacts: list[Artifact]) -> str:
    deps = "\n".join(
        "    <dependency>"
        f"<groupId>{escape(a.group)}</groupId>"
        f"<artifactId>{escape(a.name)}</artifactId>"
        f"<version>{escape(a.version)}</version>"
        "</dependency>"
        for a in artifacts
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>filas.local</groupId>
  <artifactId>{escape(project)}</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


def _mvn() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PlatformError(
            "Maven ('mvn') is not on PATH; it fetches Kafka and Apicurio from Maven Central. "
            "Install it with: apt-get install -y maven",
            code="platform_mvn_missing",
        )
    return mvn


def _run_mvn(args: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(
            [_mvn(), "-B", "-q", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise PlatformError(f"could not run mvn for {what}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-_TAIL_LINES:])
        raise PlatformError(f"mvn failed fetching {what} (exit {proc.returncode}):\n{tail}")


def is_fetched(path: Path) -> bool:
    """Whether a fetch into ``path`` (a libs folder or an app folder) completed."""
    return (path / _MARKER).exists()


def fetch_libs(project_dir: Path, project: str, artifacts: list[Artifact]) -> Path:
    """Copy ``artifacts`` and their runtime dependencies into ``project_dir/libs``; return it."""
    # Absolute: mvn runs inside project_dir, so a relative output directory would nest there.
    project_dir = project_dir.resolve()
    libs = project_dir / "libs"
    marker = libs / _MARKER
    if marker.exists():
        return libs
    project_dir.mkdir(parents=True, exist_ok=True)
    if libs.exists():
        # A previous fetch was interrupted: start clean so no stale jar joins the classpath.
        shutil.rmtree(libs)
    (project_dir / "pom.xml").write_text(render_pom(project, artifacts))
    _run_mvn(
        [
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        cwd=project_dir,
        what=project,
    )
    if not any(libs.glob("*.jar")):
        raise PlatformError(f"mvn reported success but {libs} holds no jars")
    marker.write_text("\n".join(sorted(p.name for p in libs.glob("*.jar"))) + "\n")
    return libs


def fetch_kafka(cache_dir: Path, versions: KafkaVersions) -> Path:
    """The broker classpath folder (use ``<libs>/*``)."""
    return fetch_libs(
        cache_dir / f"kafka-{versions.kafka}", f"kafka-{versions.kafka}", broker_artifacts(versions)
    )


def fetch_kafka_tools(cache_dir: Path, versions: KafkaVersions) -> Path:
    """A separate classpath folder for Kafka's perf tools; never on the broker's classpath."""
    return fetch_libs(
        cache_dir / f"kafka-tools-{versions.kafka}",
        f"kafka-tools-{versions.kafka}",
        tools_artifacts(versions),
    )


def fetch_apicurio(cache_dir: Path, version: str) -> Path:
    """Unpack Apicurio's Quarkus app; return the folder holding its launcher jar."""
    cache_dir = cache_dir.resolve()
    home = cache_dir / f"apicurio-{version}"
    marker = home / _MARKER
    if marker.exists():
        return _quarkus_dir(home)
    if home.exists():
        shutil.rmtree(home)
    download = cache_dir / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    _run_mvn(
        [
            "dependency:copy",
            f"-Dartifact=io.apicurio:apicurio-registry-app:{version}:tar.gz:all",
            f"-DoutputDirectory={download}",
        ],
        cwd=download,
        what=f"apicurio-registry-app {version}",
    )
    archive = download / f"apicurio-registry-app-{version}-all.tar.gz"
    if not archive.exists():
        raise PlatformError(f"mvn reported success but {archive} is missing")
    home.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths, links out of the tree and device files.
            tar.extractall(home, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise PlatformError(f"could not unpack {archive}: {exc}") from exc
    archive.unlink()
    app = _quarkus_dir(home)
    marker.write_text(str(app) + "\n")
    return app


def _quarkus_dir(home: Path) -> Path:
    return quarkus_launcher(home).parent


def quarkus_launcher(home: Path) -> Path:
    """The jar to ``java -jar``: ``quarkus-run.jar`` (fast-jar layout, Apicurio 3.1+) or
    ``*-runner.jar`` (legacy-jar layout, Apicurio 3.0.x)."""
    found = sorted(home.rglob("quarkus-run.jar")) or sorted(home.rglob("*-runner.jar"))
    if not found:
        raise PlatformError(f"no quarkus-run.jar or *-runner.jar under {home}; delete it, rerun")
    return found[0]
