"""Find on Hugging Face: catalog first, search with filters/sort/paging, a repo's files with fit badges."""
from __future__ import annotations

import threading

import pytest

from widgets.models import search_panel as search_module
from widgets.models.repo_view import COLUMNS as FILE_COLUMNS

MiB = 2**20
STARTER_REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"   # the starter_repo fixture's repo (a catalog one)


def search(qtbot, panel, text: str) -> list[str]:
    panel.query.setText(text)
    with qtbot.waitSignal(panel.sig_results_shown, timeout=30_000):
        panel.search_button.click()
    return panel.repo_ids()


@pytest.fixture
def many(hub):
    hub.add_repo("org/alpha-chat-GGUF", {"alpha-Q4_K_M.gguf": b"G" * 100}, downloads=500, likes=1,
                 last_modified="2026-02-01T00:00:00.000Z")
    hub.add_repo("org/alpha-chat", {"model.safetensors": b"S" * 100, "config.json": b"{}"}, downloads=900,
                 likes=2, last_modified="2026-01-01T00:00:00.000Z")
    hub.add_repo("else/alpha-mini-GGUF", {"mini-Q8_0.gguf": b"G" * 100}, downloads=10, likes=50,
                 last_modified="2026-06-01T00:00:00.000Z")
    hub.add_repo("org/beta-GGUF", {"beta-Q4_0.gguf": b"G" * 100}, downloads=5)
    return hub


def test_offline_the_catalog_shows_and_search_is_off(qtbot, models_tab):
    """Tests run with HF_HUB_OFFLINE=1 unless they use the hub."""
    panel = models_tab.hub.search
    assert models_tab.offline_banner.isVisibleTo(models_tab)
    assert "Offline mode is on" in models_tab.offline_banner.text()
    assert not panel.query.isEnabled() and not panel.search_button.isEnabled()
    ids = panel.repo_ids()
    assert "bartowski/SmolLM2-135M-Instruct-GGUF" in ids and len(ids) >= 10
    first = panel.results.topLevelItem(0)
    assert first.text(0) == "★ bartowski/SmolLM2-135M-Instruct-GGUF" and "Licence: Apache-2.0" in first.toolTip(0)
    assert "SmolLM2 135M Instruct" in first.toolTip(0) and "runs on any computer" in first.toolTip(0)
    # offline, a catalog repo's files cannot be listed: the repo view says so
    panel.choose(ids[0])
    view = models_tab.hub.repo
    qtbot.waitUntil(lambda: "Offline mode is on" in view.status.text(), timeout=30_000)
    assert "None of its files are on this computer yet" in view.status.text()


def test_offline_a_repo_names_its_files_already_on_disk(qtbot, models_tab):
    from model_files import write_hf_cache_model
    from runtime import paths

    write_hf_cache_model(paths.hf_cache_dir(), STARTER_REPO, "SmolLM2-135M-Instruct-Q8_0.gguf")
    with qtbot.waitSignal(models_tab.sig_library_loaded, timeout=60_000):
        models_tab.refresh()
    view = models_tab.hub.repo
    view.open_repo(STARTER_REPO)
    qtbot.waitUntil(lambda: "Offline mode is on" in view.status.text(), timeout=30_000)
    assert "Already on this computer" in view.status.text()
    assert "SmolLM2-135M-Instruct-Q8_0" in view.status.text()


def test_online_there_is_no_banner(qtbot, hub, models_tab):
    assert not models_tab.offline_banner.isVisibleTo(models_tab)
    assert models_tab.hub.search.query.isEnabled()


def test_search_filters_sorts_and_keeps_the_catalog_first(qtbot, many, models_tab):
    panel = models_tab.hub.search
    assert panel.kind.currentData() == "gguf"
    assert search(qtbot, panel, "alpha") == ["org/alpha-chat-GGUF", "else/alpha-mini-GGUF"]
    panel.sort.setCurrentIndex(panel.sort.findData("likes"))            # a new sort searches again
    qtbot.waitUntil(lambda: panel.repo_ids() == ["else/alpha-mini-GGUF", "org/alpha-chat-GGUF"], timeout=30_000)
    panel.sort.setCurrentIndex(panel.sort.findData("updated"))
    qtbot.waitUntil(lambda: panel.repo_ids()[:1] == ["else/alpha-mini-GGUF"], timeout=30_000)
    panel.kind.setCurrentIndex(panel.kind.findData("checkpoint"))
    qtbot.waitUntil(lambda: panel.repo_ids() == ["org/alpha-chat"], timeout=30_000)
    item = panel.results.topLevelItem(0)
    assert [item.text(c) for c in range(4)] == ["org/alpha-chat", "Checkpoint", "900", "2"]
    # the catalog's matches come first, then the hub's results
    panel.kind.setCurrentIndex(panel.kind.findData("gguf"))
    many.add_repo("someone/SmolLM2-135M-Instruct-Q-GGUF", {"x-Q4_0.gguf": b"G"}, downloads=1)
    ids = search(qtbot, panel, "SmolLM2-135M")
    assert ids[0] == STARTER_REPO and ids[-1] == "someone/SmolLM2-135M-Instruct-Q-GGUF"
    assert all(panel.results.topLevelItem(i).text(0).startswith("★") for i in range(len(ids) - 1))
    assert "shown" in panel.status.text()


def test_more_results_pages(qtbot, hub, models_tab):
    for i in range(5):
        hub.add_repo(f"paged/m{i}-GGUF", {"a-Q4_0.gguf": b"x"}, downloads=100 - i)
    hub.page_size = 2
    panel = models_tab.hub.search
    assert search(qtbot, panel, "paged") == ["paged/m0-GGUF", "paged/m1-GGUF"]
    assert panel.more_button.isEnabled() and "more available" in panel.status.text()
    for expected in (4, 5):
        with qtbot.waitSignal(panel.sig_results_shown, timeout=30_000):
            panel.more_button.click()
        assert len(panel.repo_ids()) == expected
    qtbot.waitUntil(lambda: not panel.more_button.isEnabled(), timeout=5_000)
    assert panel.repo_ids() == [f"paged/m{i}-GGUF" for i in range(5)]


def test_a_stale_answer_is_dropped(qtbot, many, models_tab, monkeypatch):
    """The first search answers after the second: its results never reach the screen."""
    release = threading.Event()
    real = search_module.fetch_page

    def slow_for_alpha(search, job=None):
        if search.query == "alpha":
            release.wait(30)
        return real(search, job)

    monkeypatch.setattr(search_module, "fetch_page", slow_for_alpha)
    import time

    panel = models_tab.hub.search
    panel.query.setText("alpha")
    began = time.perf_counter()
    panel.search_button.click()
    assert time.perf_counter() - began < 0.1, "the UI thread never waits for the hub"
    assert panel.status.text() == "Searching Hugging Face…"
    assert search(qtbot, panel, "beta") == ["org/beta-GGUF"]
    shown = []
    panel.sig_results_shown.connect(lambda n, s: shown.append(n))
    release.set()
    qtbot.waitUntil(lambda: not panel._workers, timeout=30_000)
    assert panel.repo_ids() == ["org/beta-GGUF"] and shown == []


def test_a_failing_hub_is_said_plainly(qtbot, many, models_tab):
    many.fail_status = 503
    panel = models_tab.hub.search
    panel.query.setText("alpha")
    panel.search_button.click()
    qtbot.waitUntil(lambda: "Search failed" in panel.status.text(), timeout=30_000)
    assert "server error (503)" in panel.status.text()


def open_repo(qtbot, models_tab, repo_id: str):
    view = models_tab.hub.repo
    with qtbot.waitSignal(view.sig_judged, timeout=60_000):
        view.open_repo(repo_id)
    return view


def cells(view, name: str) -> dict[str, str]:
    item = view.row_of(name)
    assert item is not None, name
    return {c: item.text(i) for i, c in enumerate(FILE_COLUMNS) if c}


def test_repo_view_badges_recommendation_and_context(qtbot, starter_repo, models_tab):
    view = models_tab.hub.repo
    view.available_bytes = 512 * MiB   # judge against a known amount of free memory
    view.context.setValue(4096)
    open_repo(qtbot, models_tab, STARTER_REPO)
    q4, q8, f16 = ("SmolLM2-135M-Instruct-Q4_1.gguf", "SmolLM2-135M-Instruct-Q8_0.gguf",
                   "SmolLM2-135M-Instruct-F16.gguf")
    assert [cells(view, n)["Fit"] for n in (q4, q8, f16)] == ["Fits", "Fits", "Tight"]
    assert cells(view, q8)["File"] == f"★ {q8}" and cells(view, q4)["File"] == q4
    assert cells(view, q8)["Size"] == "150.0 MiB" and cells(view, q8)["Type"] == "Q8_0"
    assert view.reason_of(q8).startswith(f"{q8}: Recommended") and "Q8_0" in view.summary.text()
    assert view.detail.text() == view.reason_of(q8)                      # the recommended one is selected
    assert "lower quality than Q8_0" in view.reason_of(q4)
    assert view.row_of(q8).font(0).bold() and not view.row_of(q4).font(0).bold()
    tip = view.row_of(f16).toolTip(FILE_COLUMNS.index("Fit"))
    assert "Weights 280.0 MiB + KV cache" in tip and "512.0 MiB of RAM is free" in tip
    assert "Other files (1)" in [view.files.topLevelItem(i).text(0) for i in range(view.files.topLevelItemCount())]
    assert "licence apache-2.0" in view.title.text()

    requests = len(starter_repo.requests)
    with qtbot.waitSignal(view.sig_judged, timeout=60_000):
        view.context.setValue(8192)       # the badges follow the context length
    assert [cells(view, n)["Fit"] for n in (q4, q8, f16)] == ["Tight", "Tight", "Too big"]
    assert not any(cells(view, n)["File"].startswith("★") for n in (q4, q8, f16))
    assert view.summary.text().startswith("Nothing fits comfortably")
    with qtbot.waitSignal(view.sig_judged, timeout=60_000):
        view.context.setValue(2048)
    assert [cells(view, n)["Fit"] for n in (q4, q8, f16)] == ["Fits", "Fits", "Tight"]
    assert cells(view, q8)["File"] == f"★ {q8}"
    listings = [path for method, path, _range in starter_repo.requests[requests:]
                if method == "GET" and path.startswith("/api/models/")]
    assert listings == [], "a new context judges the same listing again"


def test_choosing_a_result_opens_it(qtbot, starter_repo, models_tab):
    panel, view = models_tab.hub.search, models_tab.hub.repo
    models_tab.pages.setCurrentWidget(models_tab.hub)
    with qtbot.waitSignal(view.sig_judged, timeout=60_000):
        assert panel.choose(STARTER_REPO)
    assert view.repo_id == STARTER_REPO and len(view.choices) == 3
    assert all(button.isEnabled() for button in view.buttons.values())
    assert "SmolLM2 135M Instruct" in view.title.text()   # the catalog's description


def test_gated_repo_needs_a_token(qtbot, hub, models_tab):
    hub.add_repo("org/locked-GGUF", {"locked-Q4_0.gguf": b"G" * 100}, gated="manual")
    view = models_tab.hub.repo
    view.open_repo("org/locked-GGUF")
    qtbot.waitUntil(lambda: "gated" in view.title.text().lower(), timeout=30_000)
    assert "needs a token" in view.title.text().lower()


def test_token_dialog_without_a_keyring_names_hf_token(qtbot, models_tab, monkeypatch):
    import keyring
    from keyring.backends import fail

    # As on a headless Linux box. Not the machine's default: a desktop has a keyring, and keyring
    # adopts any backend class a test defines into its default chain.
    monkeypatch.setattr(keyring.core, "_keyring_backend", fail.Keyring())
    monkeypatch.setenv("HF_TOKEN", "hf_secret_from_env")
    dialog = models_tab.hub.open_token_dialog()
    qtbot.waitUntil(lambda: "HF_TOKEN" in dialog.state.text(), timeout=10_000)
    assert "No OS keyring is available" in dialog.state.text()
    assert not dialog.save_button.isEnabled()
    texts = [w.text() for w in dialog.findChildren(type(dialog.state))] + [dialog.field.text()]
    assert not any("hf_secret_from_env" in t for t in texts)
    dialog.close()


def test_token_dialog_saves_in_the_keyring_and_never_shows_it(qtbot, models_tab):
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        priority = 1
        store: dict = {}

        def get_password(self, service, username):
            return self.store.get((service, username))

        def set_password(self, service, username, password):
            self.store[(service, username)] = password

        def delete_password(self, service, username):
            self.store.pop((service, username), None)

    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    try:
        dialog = models_tab.hub.open_token_dialog()
        qtbot.waitUntil(lambda: dialog.save_button.isEnabled(), timeout=10_000)
        assert "No token is saved" in dialog.state.text()
        dialog.field.setText("hf_typed_once")
        dialog.save_button.click()
        assert dialog.field.text() == ""
        qtbot.waitUntil(lambda: "saved in the OS keyring" in dialog.state.text(), timeout=10_000)
        assert MemoryKeyring.store == {("model-workbench", "huggingface"): "hf_typed_once"}
        texts = [w.text() for w in dialog.findChildren(type(dialog.state))] + [dialog.field.text()]
        assert not any("hf_typed_once" in t for t in texts)
        assert dialog.forget_button.isEnabled()
        dialog.forget_button.click()
        qtbot.waitUntil(lambda: "No token is saved" in dialog.state.text(), timeout=10_000)
        assert MemoryKeyring.store == {}
        dialog.close()
    finally:
        keyring.set_keyring(previous)


def test_download_button_queues_the_choice(qtbot, starter_repo, models_tab):
    view = open_repo(qtbot, models_tab, STARTER_REPO)
    name = "SmolLM2-135M-Instruct-Q4_1.gguf"
    with qtbot.waitSignal(models_tab.downloads.sig_done, timeout=120_000):
        view.buttons[name].click()
    [record] = models_tab.download_store.records()
    assert record.repo_id == STARTER_REPO and [f.path for f in record.files] == [name]
    assert record.label == view.choice(name).label and record.status == "done"
    item = models_tab.downloads_panel.item(record.id)
    assert item.chat_button.isVisibleTo(item) and item.compress_button.isVisibleTo(item)
    assert view.row_of(name).text(FILE_COLUMNS.index("Fit")) == "Fits"


def test_a_downloaded_file_shows_the_quant_its_header_states(qtbot, hub, models_tab, starter_model):
    """Before the download the name is all there is ("-Q8_0"); afterwards the file's own header (Q4_1) wins."""
    import hashlib

    from runtime.hub.types import RemoteFile

    name = "mislabelled-Q8_0.gguf"
    sha = hub.add_repo("org/mislabelled-GGUF", {name: starter_model})
    view = models_tab.hub.repo
    view.available_bytes = 8 * 1024 * MiB
    open_repo(qtbot, models_tab, "org/mislabelled-GGUF")
    assert cells(view, name)["Type"] == "Q8_0"
    remote = RemoteFile(name, starter_model.stat().st_size, hashlib.sha256(starter_model.read_bytes()).hexdigest())
    with qtbot.waitSignal(models_tab.sig_library_loaded, timeout=120_000):
        models_tab.downloads.enqueue("org/mislabelled-GGUF", sha, [remote], label="Q8_0")
    open_repo(qtbot, models_tab, "org/mislabelled-GGUF")
    assert cells(view, name)["Type"] == "Q4_1"
    assert "header" in view.row_of(name).toolTip(1)
