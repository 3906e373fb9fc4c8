"""The download queue in the Models tab: progress to the end, pause/resume, cancel, several queued,
and a restarted app (a new tab on the same database) continuing from the bytes on disk."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime import paths
from runtime.hub.types import RemoteFile

REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"
NAME = "SmolLM2-135M-Instruct-Q4_1.gguf"
THROTTLE = 12_000_000   # bytes per second: the 94 MiB starter takes about 8 s


@pytest.fixture
def served(hub, starter_model):
    """The starter on the fake hub (its real bytes), and the RemoteFile the app would list for it."""
    import hashlib

    sha = hub.add_repo(REPO, {NAME: starter_model, "README.md": "# starter"})
    digest = hashlib.sha256(starter_model.read_bytes()).hexdigest()
    remote = RemoteFile(NAME, starter_model.stat().st_size, sha256=digest)
    return hub, sha, remote


def partials() -> list[Path]:
    return [p for p in paths.hf_cache_dir().rglob("*") if p.name.endswith(".incomplete")]


def enqueue(tab, served, label="Q4_1", dest=None):
    _hub, sha, remote = served
    return tab.downloads.enqueue(REPO, sha, [remote], label=label, dest=dest)


def wait_for_bytes(qtbot, tab, download_id: int, at_least: int) -> None:
    qtbot.waitUntil(lambda: tab.downloads.records[download_id].done_bytes >= at_least, timeout=60_000)


def test_download_with_progress_to_completion_then_chat(qtbot, served, models_tab, starter_model):
    seen = []
    models_tab.downloads.sig_progress.connect(lambda i, done, total, text: seen.append((done, total, text)))
    with qtbot.waitSignal(models_tab.sig_library_loaded, timeout=120_000):   # the library refreshes at the end
        record = enqueue(models_tab, served)
    final = models_tab.downloads.records[record.id]
    assert final.status == "done" and final.done_bytes == final.total_bytes == starter_model.stat().st_size
    [path] = final.paths
    assert Path(path).read_bytes()[:1024] == starter_model.read_bytes()[:1024]
    assert paths.hf_cache_dir() in Path(path).parents and partials() == []
    assert seen and seen[-1][0] == seen[-1][1]
    stored = models_tab.download_store.get(record.id)
    assert stored.status == "done" and stored.paths == [path]

    # the panel row: figures and the one-click next steps
    item = models_tab.downloads_panel.item(record.id)
    assert "Done" in item.figures.text() and "93.8 MiB of 93.8 MiB" in item.figures.text()
    assert item.bar.value() == 1000 and not item.pause_button.isVisibleTo(item)
    # the library lists it, under its repo, and selects it
    assert models_tab.library.cell(path, "Source") == f"Hugging Face cache ({REPO})"
    with qtbot.waitSignal(models_tab.sig_open_requested) as blocker:
        item.chat_button.click()
    assert blocker.args == ["chat", path]


def test_progress_shows_bytes_percent_speed_and_time_left(qtbot, served, models_tab):
    hub = served[0]
    hub.throttle = THROTTLE
    record = enqueue(models_tab, served)
    item = models_tab.downloads_panel.item(record.id)
    qtbot.waitUntil(lambda: "/s" in item.figures.text() and "left" in item.figures.text(), timeout=30_000)
    text = item.figures.text()
    assert text.startswith("Downloading · ") and " of 93.8 MiB" in text and "MiB/s" in text
    assert 0 < item.bar.value() < 1000 and item.bar.text().endswith("%")
    models_tab.downloads.cancel(record.id)
    qtbot.waitUntil(lambda: models_tab.downloads.records[record.id].status == "cancelled", timeout=30_000)


def test_pause_keeps_the_bytes_and_resume_continues(qtbot, served, models_tab, starter_model):
    hub, _sha, remote = served
    hub.throttle = THROTTLE
    record = enqueue(models_tab, served)
    wait_for_bytes(qtbot, models_tab, record.id, 20 * 2**20)
    item = models_tab.downloads_panel.item(record.id)
    with qtbot.waitSignal(models_tab.downloads.sig_cancelled, timeout=30_000) as blocker:
        item.pause_button.click()
    assert blocker.args == [record.id, "paused"]
    assert item.pause_button.text() == "Resume" and "Paused" in item.figures.text()
    [partial] = partials()
    kept = partial.stat().st_size
    assert kept >= 20 * 2**20
    assert models_tab.download_store.get(record.id).status == "paused"

    hub.throttle = None
    served_before = hub.served(REPO, NAME)
    with qtbot.waitSignal(models_tab.downloads.sig_done, timeout=120_000):
        item.pause_button.click()    # Resume
    size = remote.size
    assert hub.served(REPO, NAME) - served_before <= size - kept + 16 * 2**20   # only the rest was fetched
    assert partials() == []


def test_cancel_leaves_no_partial_file(qtbot, served, models_tab):
    hub = served[0]
    hub.throttle = THROTTLE
    record = enqueue(models_tab, served)
    wait_for_bytes(qtbot, models_tab, record.id, 8 * 2**20)
    assert partials()
    item = models_tab.downloads_panel.item(record.id)
    with qtbot.waitSignal(models_tab.downloads.sig_cancelled, timeout=30_000) as blocker:
        item.cancel_button.click()
    assert blocker.args == [record.id, "cancelled"]
    assert partials() == []
    assert not list(paths.hf_cache_dir().rglob(NAME))
    assert models_tab.download_store.get(record.id).status == "cancelled"
    assert item.remove_button.isVisibleTo(item) and not item.cancel_button.isVisibleTo(item)
    item.remove_button.click()
    assert models_tab.downloads_panel.item(record.id) is None


def test_cancel_a_paused_download_discards_its_bytes(qtbot, served, models_tab):
    hub = served[0]
    hub.throttle = THROTTLE
    record = enqueue(models_tab, served)
    wait_for_bytes(qtbot, models_tab, record.id, 8 * 2**20)
    with qtbot.waitSignal(models_tab.downloads.sig_cancelled, timeout=30_000):
        models_tab.downloads.pause(record.id)
    assert partials()
    with qtbot.waitSignal(models_tab.downloads.sig_cancelled, timeout=30_000) as blocker:
        models_tab.downloads.cancel(record.id)
    assert blocker.args == [record.id, "cancelled"] and partials() == []


def test_several_downloads_queue_one_after_another(qtbot, served, models_tab, tmp_path):
    hub, sha, remote = served
    hub.add_repo("org/second-GGUF", {"second-Q4_0.gguf": b"G" * 300_000})
    from runtime.hub.repo import fetch_listing

    listing = fetch_listing("org/second-GGUF")
    hub.throttle = THROTTLE
    first = enqueue(models_tab, served)
    second = models_tab.downloads.enqueue("org/second-GGUF", listing.revision, listing.files[:1], label="Q4_0")
    assert models_tab.downloads.is_running(first.id) and not models_tab.downloads.is_running(second.id)
    assert "Waiting" in models_tab.downloads_panel.item(second.id).figures.text()
    hub.throttle = None
    done = []
    models_tab.downloads.sig_done.connect(lambda i, p: done.append(i))
    qtbot.waitUntil(lambda: len(done) == 2, timeout=120_000)
    assert done == [first.id, second.id]
    assert models_tab.downloads_panel.summary.text() == "0 active, 2 other"


def test_the_same_unfinished_download_is_not_doubled(qtbot, served, models_tab):
    hub = served[0]
    hub.throttle = THROTTLE
    record = enqueue(models_tab, served)
    wait_for_bytes(qtbot, models_tab, record.id, 4 * 2**20)
    assert enqueue(models_tab, served).id == record.id
    with qtbot.waitSignal(models_tab.downloads.sig_cancelled, timeout=30_000):
        models_tab.downloads.pause(record.id)
    assert enqueue(models_tab, served).id == record.id      # a paused one is resumed
    assert len(models_tab.download_store.records()) == 1
    models_tab.downloads.cancel(record.id)
    qtbot.waitUntil(lambda: models_tab.downloads.records[record.id].status == "cancelled", timeout=30_000)


def new_tab(qtbot, store):
    from widgets.models.tab import ModelsTab

    tab = ModelsTab(store)
    qtbot.addWidget(tab, before_close_func=lambda w: w.shutdown())
    tab.show()
    return tab


def test_a_restarted_app_continues_from_the_bytes_on_disk(qtbot, served, models_tab, store):
    """Close the tab mid-download (as the app does on quit): a new tab on the same database resumes."""
    hub, _sha, remote = served
    hub.throttle = THROTTLE
    record = enqueue(models_tab, served)
    wait_for_bytes(qtbot, models_tab, record.id, 30 * 2**20)
    models_tab.shutdown()
    from runtime.store.downloads import DownloadStore

    with DownloadStore(store.path) as records:
        assert records.get(record.id).status == "queued"
    [partial] = partials()
    kept = partial.stat().st_size
    assert kept >= 30 * 2**20

    hub.throttle = None
    before = hub.served(REPO, NAME)
    again = new_tab(qtbot, store)
    with qtbot.waitSignal(again.downloads.sig_done, timeout=120_000):
        assert again.start_downloads() == [record.id]
    assert hub.served(REPO, NAME) - before <= remote.size - kept + 16 * 2**20   # not from zero
    assert again.download_store.get(record.id).status == "done" and partials() == []


def test_after_a_crash_running_downloads_resume_and_paused_ones_wait(qtbot, served, models_tab, store):
    """A crash leaves a record 'running': the next start resumes it. A paused one waits for Resume."""
    hub, sha, remote = served
    hub.add_repo("org/second-GGUF", {"second-Q4_0.gguf": b"G" * 300_000})
    hub.throttle = THROTTLE
    record = enqueue(models_tab, served)
    wait_for_bytes(qtbot, models_tab, record.id, 10 * 2**20)
    with qtbot.waitSignal(models_tab.downloads.sig_cancelled, timeout=30_000):
        models_tab.downloads.pause(record.id)
    kept = partials()[0].stat().st_size
    models_tab.download_store.update(record.id, status="running")     # as a killed app leaves it
    paused = models_tab.download_store.add("org/second-GGUF", "main",
                                           [RemoteFile("second-Q4_0.gguf", 300_000)], status="paused")
    models_tab.shutdown()

    hub.throttle = None
    before = hub.served(REPO, NAME)
    again = new_tab(qtbot, store)
    with qtbot.waitSignal(again.downloads.sig_done, timeout=120_000):
        assert again.start_downloads() == [record.id, paused.id]
    assert hub.served(REPO, NAME) - before <= remote.size - kept + 16 * 2**20
    item = again.downloads_panel.item(paused.id)
    assert item.pause_button.text() == "Resume" and again.downloads.records[paused.id].status == "paused"


def test_a_failed_download_says_why_and_offers_retry(qtbot, served, models_tab):
    hub = served[0]
    hub.corrupt.add((REPO, NAME))
    with qtbot.waitSignal(models_tab.downloads.sig_failed, timeout=120_000):
        record = enqueue(models_tab, served)
    item = models_tab.downloads_panel.item(record.id)
    assert item.pause_button.text() == "Retry"
    assert "Failed" in item.figures.text() and "damaged" in item.figures.text().lower()
    assert "failed" in models_tab.banner.text()
    assert partials() == [] and not list(paths.hf_cache_dir().rglob(NAME))
    hub.corrupt.clear()
    with qtbot.waitSignal(models_tab.downloads.sig_done, timeout=120_000):
        item.pause_button.click()


def test_a_download_into_another_folder_is_added_by_reference(qtbot, served, models_tab, tmp_path):
    from runtime.models.references import load_references

    folder = tmp_path / "elsewhere"
    with qtbot.waitSignal(models_tab.sig_library_loaded, timeout=120_000):
        record = enqueue(models_tab, served, dest=str(folder))
    assert models_tab.downloads.records[record.id].paths == [str(folder / NAME)]
    assert load_references() == [folder / NAME]
    assert models_tab.library.cell(folder / NAME, "Source") == "Added by reference"
    assert not os.listdir(paths.hf_cache_dir()) or not list(paths.hf_cache_dir().rglob(NAME))


def test_a_gated_download_offers_the_token_dialog(qtbot, hub, models_tab):
    hub.add_repo("org/locked-GGUF", {"locked-Q4_0.gguf": b"G" * 1000}, gated="manual")
    sha = hub.repos["org/locked-GGUF"].sha
    with qtbot.waitSignal(models_tab.downloads.sig_failed, timeout=60_000) as blocker:
        models_tab.downloads.enqueue("org/locked-GGUF", sha, [RemoteFile("locked-Q4_0.gguf", 1000)], label="Q4_0")
    from runtime.errors import GatedRepo

    assert isinstance(blocker.args[1], GatedRepo)
    banner = models_tab.banner
    assert "gated" in banner.text() and banner.actions() == ["token"]
    banner.button("token").click()
    dialog = models_tab.hub.token_dialog
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.busy, timeout=10_000)
    dialog.close()
