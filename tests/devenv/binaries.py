"""Find the testbin binaries built by hack/testbin.sh (cache keyed by name and version)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class MissingBinary(RuntimeError):
    pass


def testbin_cache() -> Path:
    explicit = os.environ.get("ROTOR_TESTBIN_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rotor" / "testbin"


def find(name: str) -> Path:
    """The binary NAME: $ROTOR_<NAME> if set, else the newest build in the testbin cache."""
    override = os.environ.get("ROTOR_" + name.upper().replace("-", "_"))
    if override:
        return Path(override)
    builds = sorted(testbin_cache().glob(f"{name}-*/{name}"), key=lambda p: p.stat().st_mtime)
    if builds:
        return builds[-1]
    raise MissingBinary(
        f"{name} is not built: run `make testbin` (hack/testbin.sh builds it into {testbin_cache()})"
    )


def find_postgres_bin() -> Path:
    """Directory holding initdb/postgres from Debian's postgresql package (or on PATH)."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise MissingBinary("PostgreSQL server is not installed: `apt-get install postgresql` (make deps does it)")
