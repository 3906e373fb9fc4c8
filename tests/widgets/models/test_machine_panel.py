"""Help > This machine…: the facts in plain words, gathered off the UI thread; a GPU this build cannot
use comes with the rebuild command and a Copy button."""
from __future__ import annotations

import threading

from PySide6.QtWidgets import QApplication

from runtime.models.hardware import GpuDevice
from runtime.models.this_machine import MachineFacts, OsGpu
from widgets.models import machine_panel
from widgets.models.machine_panel import MachinePanel

GB = 1024**3
CUDA_CARD_CPU_BUILD = MachineFacts(
    cpu_model="AMD Ryzen 7 5800X 8-Core Processor", physical_cores=8, logical_cores=16, isa_level="AVX2",
    ram_total=32 * GB, ram_available=26 * GB, os="Ubuntu 24.04 LTS", arch="x86_64",
    os_gpus=[OsGpu("NVIDIA GeForce RTX 3060", "NVIDIA", 12 * GB, 11 * GB)])
CUDA_BUILD = MachineFacts(
    cpu_model="Intel Core i7-12700H", physical_cores=14, logical_cores=20, isa_level="AVX2", ram_total=16 * GB,
    ram_available=11 * GB, os="Windows 11", arch="AMD64", backends=["CUDA"],
    gpus=[GpuDevice("CUDA0", "NVIDIA GeForce RTX 3060 Laptop GPU", int(5.6 * GB), 6 * GB)])


def _rows(panel: MachinePanel) -> dict[str, str]:
    rows = {}
    for row in range(panel.form.rowCount()):
        label = panel.form.itemAt(row, panel.form.ItemRole.LabelRole).widget()
        field = panel.form.itemAt(row, panel.form.ItemRole.FieldRole).widget()
        rows[label.text()] = field.text()
    return rows


def test_a_gpu_this_build_cannot_use_shows_the_command_to_copy(qtbot):
    seen_threads = []

    def gather():
        seen_threads.append(threading.current_thread() is threading.main_thread())
        return CUDA_CARD_CPU_BUILD

    panel = MachinePanel(gather=gather)
    qtbot.addWidget(panel)
    panel.show()
    with qtbot.waitSignal(panel.sig_facts, timeout=10_000):
        panel.refresh()
    assert seen_threads == [False]                  # gathered on a worker, never on the UI thread
    rows = _rows(panel)
    assert rows["Processor:"] == "AMD Ryzen 7 5800X 8-Core Processor, 8 cores, 16 threads (AVX2)"
    assert rows["Memory:"] == "32 GB, 26 GB free"
    assert "RTX 3060 (12 GB), which this llama.cpp cannot use" in rows["Graphics:"]
    assert panel.notice.isVisible() and "no CUDA support" in panel.notice.text()
    assert panel.command_box.isVisible()
    assert panel.command.text() == 'CMAKE_ARGS="-DGGML_CUDA=on" bash scripts/setup.sh'
    panel.copy_button.click()
    assert QApplication.clipboard().text() == 'CMAKE_ARGS="-DGGML_CUDA=on" bash scripts/setup.sh'
    assert panel.defaults.text().startswith("New models load with 8 threads (one per processor core)")


def test_a_usable_gpu_shows_no_notice_and_auto_layers(qtbot):
    panel = MachinePanel(gather=lambda: CUDA_BUILD)
    qtbot.addWidget(panel)
    panel.show()
    with qtbot.waitSignal(panel.sig_facts, timeout=10_000):
        panel.refresh()
    assert "used by llama.cpp through CUDA" in _rows(panel)["Graphics:"]
    assert not panel.notice.isVisible() and not panel.command_box.isVisible()
    assert "14 threads" in panel.defaults.text() and "GPU layers on Auto" in panel.defaults.text()


def test_a_failure_is_shown_in_words(qtbot):
    def gather():
        raise OSError("no /proc")

    panel = MachinePanel(gather=gather)
    qtbot.addWidget(panel)
    panel.show()
    worker = panel.refresh()
    qtbot.waitUntil(lambda: not worker.running, timeout=10_000)
    assert panel.status.text().startswith("Could not look at this computer")


def test_help_menu_opens_it_on_this_machine(qtbot, window):
    """The real gatherer: llama.cpp's GPU list from the engine child, and the OS probes."""
    window.menu_actions["this_machine"].trigger()
    dialog = window._machine_dialog
    qtbot.waitUntil(lambda: dialog.panel.facts is not None, timeout=60_000)
    rows = _rows(dialog.panel)
    assert set(rows) >= {"Processor:", "Memory:", "Graphics:", "llama.cpp:"}
    assert dialog.panel.defaults.text().startswith("New models load with")
    dialog.close()


def test_show_machine_dialog_reuses_its_window(qtbot, window, monkeypatch):
    monkeypatch.setattr(machine_panel, "collect_machine_facts", lambda: CUDA_BUILD)
    first = machine_panel.show_machine_dialog(window)
    qtbot.waitUntil(lambda: first.panel.facts is CUDA_BUILD, timeout=10_000)
    assert machine_panel.show_machine_dialog(window) is first
    qtbot.waitUntil(lambda: not first.panel.worker.running, timeout=10_000)
    first.close()


def test_library_and_picker_fit_badges_count_the_gpus(qtbot, monkeypatch, starter_model):
    """The library's verdicts and the chat picker's (at another context) are judged with the GPUs
    llama.cpp lists: here a described 6 GB CUDA card, so the starter fits in GPU memory."""
    from runtime.engine import local
    from widgets.chat.model_picker import LocalModelForm
    from widgets.models.library_model import scan_library_rows

    gpu = GpuDevice("CUDA0", "NVIDIA GeForce RTX 3060 Laptop GPU", int(5.6 * GB), 6 * GB)
    monkeypatch.setattr(local, "list_gpus", lambda: [gpu])
    rows, _problems = scan_library_rows()
    starter = next(r for r in rows if r.entry.info is not None)
    assert starter.gpus == [gpu] and starter.fit.memory == "GPU memory (CUDA0)"
    form = LocalModelForm()
    qtbot.addWidget(form)
    form.set_rows([starter])
    form.n_ctx.setValue(1024 if starter.fit_ctx != 1024 else 2048)   # not the library's context
    assert form.verdict is not starter.fit and form.verdict.memory == "GPU memory (CUDA0)"
