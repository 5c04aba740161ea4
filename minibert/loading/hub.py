"""Finding a checkpoint's files: a local directory, or a Hugging Face hub id through huggingface_hub's
cache (cache first; one short look at the hub before any download; clear errors when offline).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = "pytorch_model.bin"
HUB_ARGUMENTS = ("cache_dir", "revision", "token", "local_files_only", "force_download")


def resolve_file(name_or_path: str | os.PathLike, filename: str, *, required: bool = True,
                 **hub: Any) -> Path | None:
    """Path of ``filename`` in a local directory or a hub repository (downloaded into the hub cache).

    Returns None when the file does not exist and ``required`` is False.
    """
    local = Path(name_or_path)
    if local.is_dir():
        candidate = local / filename
        if candidate.is_file():
            return candidate
        if required:
            raise OSError(f"{local} has no {filename}")
        return None
    if local.is_file():
        raise OSError(f"{local} is a file; pass the directory that holds {filename} (or a hub id)")
    if isinstance(name_or_path, Path) or str(name_or_path).startswith((".", "/", "~")) or local.exists():
        raise OSError(f"{name_or_path} is not a directory (expected a model folder or a hub id)")
    return _hub_download(str(name_or_path), filename, required=required, **hub)


# How long the one look at the hub may take before minibert concludes it is offline. huggingface_hub
# itself would retry for about 30 s (five attempts, backing off) before giving up.
HUB_PROBE_TIMEOUT_S = 2.0
# The answer holds for a minute, so that the several files of one load cost one look at most.
HUB_PROBE_MEMORY_S = 60.0
_hub_reachable_memo: dict[str, tuple[float, bool]] = {}


def _offline_by_environment() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, when it is imported; we honour it at each call.
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def hub_reachable() -> bool:
    """One HEAD request to the hub's endpoint, no retries, HUB_PROBE_TIMEOUT_S at most; remembered per
    endpoint for HUB_PROBE_MEMORY_S.

    Any answer, even an error status, means the hub is there; no answer (no DNS, refused, timed out,
    hung up) means offline.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    endpoint = constants.ENDPOINT
    asked, reachable = _hub_reachable_memo.get(endpoint, (-HUB_PROBE_MEMORY_S, False))
    if time.monotonic() - asked >= HUB_PROBE_MEMORY_S:
        try:
            get_session().head(endpoint, timeout=HUB_PROBE_TIMEOUT_S, follow_redirects=False)
            reachable = True
        except Exception:  # whichever HTTP library huggingface_hub uses, and however the network fails
            reachable = False
        _hub_reachable_memo[endpoint] = (time.monotonic(), reachable)
    return reachable


def _hub_download(repo_id: str, filename: str, *, required: bool, **hub: Any) -> Path | None:
    """The local hub cache first; then, if one short request finds the hub, huggingface_hub's download
    (with its progress bar); otherwise a clear OSError (or None for a file that is not required)."""
    # Imported here so that `import minibert` stays light; only hub ids need it.
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    unknown = set(hub) - set(HUB_ARGUMENTS)
    if unknown:
        raise TypeError(f"unexpected hub arguments {sorted(unknown)}; known: {HUB_ARGUMENTS}")
    hub = {key: value for key, value in hub.items() if value is not None}
    not_reachable = OSError(
        f"cannot load {filename} of {repo_id!r}: the Hugging Face hub cannot be reached (or HF_HUB_OFFLINE is "
        "set) and the file is not in the local hub cache. Run once with network access to cache it, or pass "
        "the path of a local directory holding config.json and model.safetensors."
    )
    try:
        if not hub.get("force_download"):
            # A file already downloaded needs no network at all (as transformers with HF_HUB_OFFLINE=1).
            cached = try_to_load_from_cache(repo_id, filename, cache_dir=hub.get("cache_dir"),
                                            revision=hub.get("revision"))
            if isinstance(cached, str):
                return Path(cached)
            if cached is not None and not required:
                return None  # the hub said before that this file does not exist, and that answer is cached
        if hub.get("local_files_only") or _offline_by_environment() or not hub_reachable():
            if not required:
                return None  # the caller may try another file name
            raise not_reachable
        return Path(hf_hub_download(repo_id, filename, **hub))
    except LocalEntryNotFoundError:  # the connection went away after the first look
        if not required:
            return None
        raise not_reachable from None
    except EntryNotFoundError:
        if not required:
            return None
        raise OSError(f"the hub repository {repo_id!r} has no file {filename}") from None
    except (RepositoryNotFoundError, HFValidationError):
        raise OSError(
            f"{repo_id!r} is neither a local directory nor a model id on the Hugging Face hub "
            "(a private or gated repository needs token=...)"
        ) from None
    except RevisionNotFoundError:
        raise OSError(f"{repo_id!r} has no revision {hub.get('revision')!r}") from None


def resolve_weight_files(name_or_path: str | os.PathLike, use_safetensors: bool = True, **hub: Any) -> list[Path]:
    """The weight files of a checkpoint: one safetensors file, the shards an index names, or a .bin."""
    single = resolve_file(name_or_path, SAFE_WEIGHTS, required=False, **hub)
    if single is not None:
        return [single]
    index = resolve_file(name_or_path, SAFE_INDEX, required=False, **hub)
    if index is not None:
        import json

        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError) as error:
            raise OSError(f"{index} is not a safetensors index (a JSON object with a weight_map): {error}") from None
        shards = sorted(set(weight_map.values()))
        return [resolve_file(name_or_path, shard, **hub) for shard in shards]
    pickled = resolve_file(name_or_path, PICKLE_WEIGHTS, required=False, **hub)
    if pickled is not None and not use_safetensors:
        return [pickled]
    if pickled is not None:
        raise OSError(
            f"{name_or_path} has only {PICKLE_WEIGHTS} (a pickle). minibert loads safetensors by default; pass "
            "use_safetensors=False to load it with torch.load(weights_only=True), which refuses pickled code"
        )
    raise OSError(f"{name_or_path} has no {SAFE_WEIGHTS}, {SAFE_INDEX} or {PICKLE_WEIGHTS}")
