"""Find a Java runtime new enough for a given jar.

Kafka 4.x runs on Java 17, Debian 12's default. Apicurio Registry 3.1+ is compiled for Java 21,
which Debian 12 does not package; machines often carry a second JDK under /usr/lib/jvm, so the
registry uses the first runtime there that is new enough instead of failing on the default one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from functools import cache
from pathlib import Path

from filas.errors import PlatformError

_JVM_ROOT = Path("/usr/lib/jvm")
_CLASS_MAGIC = b"\xca\xfe\xba\xbe"
# Class file major version 52 is Java 8; each release adds one.
_CLASS_MAJOR_OFFSET = 44


@cache
def required_java(jar: Path) -> int:
    """The Java release a jar's classes were compiled for (highest class file version seen)."""
    best = 0
    try:
        with zipfile.ZipFile(jar) as zf:
            names = [n for n in zf.namelist() if n.endswith(".class")][:200]
            for name in names:
                head = zf.read(name)[:8]
                if head[:4] == _CLASS_MAGIC:
                    best = max(best, int.from_bytes(head[6:8], "big") - _CLASS_MAJOR_OFFSET)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PlatformError(f"cannot read {jar}: {exc}") from exc
    return best


def java_release(java: str) -> int:
    """The feature release (17, 21, 25, ...) of a ``java`` executable; 0 if it does not run."""
    release_file = Path(java).resolve().parent.parent / "release"
    if release_file.exists():
        match = re.search(r'JAVA_VERSION="(\d+)', release_file.read_text())
        if match:
            return int(match.group(1))
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else 0


def candidates() -> list[str]:
    found: list[str] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        found.append(str(Path(java_home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        found.append(on_path)
    if _JVM_ROOT.is_dir():
        found += [str(p / "bin" / "java") for p in sorted(_JVM_ROOT.iterdir())]
    unique: list[str] = []
    for java in found:
        if Path(java).exists() and java not in unique:
            unique.append(java)
    return unique


@cache
def find_java(min_release: int) -> str:
    """The first java (JAVA_HOME, PATH, then /usr/lib/jvm/*) of at least ``min_release``."""
    seen: list[str] = []
    for java in candidates():
        release = java_release(java)
        seen.append(f"{java} ({release or '?'})")
        if release >= min_release:
            return java
    raise PlatformError(
        f"no Java {min_release}+ runtime found (tried: {', '.join(seen) or 'none'}); install one "
        "under /usr/lib/jvm or set JAVA_HOME",
        code="platform_java_missing",
    )
