"""Hub ids without a network: the local cache first, then one short look at the hub, never retries."""

from __future__ import annotations

import pytest

import minibert.loading.hub as hub
from minibert.loading.hub import resolve_file
from test_cli import CountingServer
from text_checkpoint import write_hub_cache, write_text_checkpoint


@pytest.fixture
def unreachable_hub(monkeypatch):
    """HF_HUB_OFFLINE unset and the hub endpoint a local port that closes every connection."""
    from huggingface_hub import constants

    server = CountingServer()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    # huggingface_hub's own downloads go there too: were it asked, its retries would show as connections.
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read at import, from conftest's setting
    monkeypatch.setattr(hub, "_hub_reachable_memo", {})
    return server


def test_a_cached_file_needs_no_network(unreachable_hub, tmp_path):
    cache = write_hub_cache(tmp_path / "hub", write_text_checkpoint(tmp_path / "model"))
    path = resolve_file("bert-base-cased", "vocab.txt", cache_dir=cache)
    assert path.read_text(encoding="utf-8").startswith("[PAD]\n[UNK]\n")
    assert "snapshots" in str(path) and unreachable_hub.connections == 0


def test_an_unreachable_hub_costs_one_attempt(unreachable_hub, tmp_path):
    with pytest.raises(OSError, match="cannot be reached .* not in the local hub cache"):
        resolve_file("bert-base-cased", "config.json", cache_dir=tmp_path / "empty")
    # A file that may be absent is None; the answer "unreachable" is remembered, not asked again.
    assert resolve_file("bert-base-cased", "model.safetensors.index.json", required=False,
                        cache_dir=tmp_path / "empty") is None
    with pytest.raises(OSError, match="cannot be reached"):
        resolve_file("bert-base-cased", "vocab.txt", cache_dir=tmp_path / "empty")
    assert unreachable_hub.connections == 1


@pytest.mark.parametrize("value", ["1", "true", "on", "ON", "yes", "True"])
def test_hf_hub_offline_makes_no_attempt(unreachable_hub, tmp_path, monkeypatch, value):
    """Every spelling huggingface_hub takes as true (its _is_true: 1, ON, YES, TRUE in any case)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    with pytest.raises(OSError, match="cannot be reached"):
        resolve_file("bert-base-cased", "config.json", cache_dir=tmp_path / "empty")
    assert unreachable_hub.connections == 0


@pytest.mark.parametrize("value", ["0", "false", "off", ""])
def test_hf_hub_offline_false_still_looks_once(unreachable_hub, tmp_path, monkeypatch, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    with pytest.raises(OSError, match="cannot be reached"):
        resolve_file("bert-base-cased", "config.json", cache_dir=tmp_path / "empty")
    assert unreachable_hub.connections == 1
