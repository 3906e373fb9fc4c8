"""The chat tab's single inference owner: where messages go, loading targets, streaming replies.

``ChatSession`` holds at most one ``LocalEngine`` (a child process) and, at the same time, at most
one remote ``ChatClient``; ``active`` says which of the two the next message goes to, and
``target_text()`` says it in words ("Messages go to: ... on this computer"). Connecting to a server
never stops the local engine (a failed connect changes nothing); loading a local model replaces
only the local engine. All blocking calls (engine start/stop, server check, ``stream_chat``) run on
workers; the session only ever touches Qt from the UI thread. It watches the engine process and
reports its death once through ``sig_engine_died(error)`` (an EngineCrashed naming the signal);
``reload()`` starts a fresh engine with the same model/options. One reply generates at a time;
``streaming_conversation_id`` names its conversation and ``streamed_text`` keeps what arrived so far,
so the tab can show another conversation meanwhile and re-show this one later.
A reply is one turn of a runtime ``ConversationSession`` (send, regenerate, edit and resend) run on
a worker with the current client; the conversation logic stays in runtime.

A reply whose saving failed (the database locked by another program, disk full) is kept as
``unsaved`` (its conversation session and Turn) and saved again on a worker after each of
``SAVE_RETRY_DELAYS_MS``; then ``sig_reply_saved(message)``, or ``sig_save_failed(error)`` once the
retries are spent (``retry_save()`` tries once more). A new turn saves it first, so the order holds.
"""
from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from runtime.engine.types import LoadOptions, SamplingParams
from runtime.errors import EngineCrashed, StoreError
from widgets.workers import Job, Worker

WATCH_MS = 1000          # how often the engine process is checked while idle
CHECK_TIMEOUT_S = 15     # a remote server that has not answered by then is reported unreachable
TURN_BUSY_TIMEOUT_S = 3.0  # a turn's writes wait this long for another program's write lock
SAVE_BUSY_TIMEOUT_S = 2.0  # so does each retry of an unsaved reply
SAVE_RETRY_DELAYS_MS = (1000, 2000, 4000, 8000)  # the waits before each background retry


def _start_engine(job: Job, old_engine, model_path: str, options: LoadOptions):
    """Worker body: stop the previous engine, then start one for ``model_path``."""
    if old_engine is not None:
        old_engine.stop()
    from runtime.engine.local import LocalEngine

    engine = LocalEngine(model_path, options)
    try:
        engine.start(cancel=job.cancel)
    except BaseException:
        engine.stop()
        raise
    return engine


def _connect_remote(job: Job, base_url: str, api_key: str, model: str, key_lookup=None):
    """Worker body: check the server (and pick its first model when none is named).

    Nothing else is touched: the local engine keeps running whatever the outcome. ``key_lookup()``
    gives the saved key (from the keyring, which may block) when ``api_key`` is empty.
    """
    from runtime.engine.client import ChatClient

    if not api_key and key_lookup is not None:
        api_key = key_lookup() or ""
    job.cancel.check()
    probe = ChatClient(base_url, api_key=api_key, model=model, timeout_s=CHECK_TIMEOUT_S,
                       read_timeout_s=CHECK_TIMEOUT_S)  # a server that accepts but never answers, too
    probe.check()
    job.cancel.check()
    if not model:
        names = probe.list_models()
        model = names[0] if names else ""
    return ChatClient(base_url, api_key=api_key, model=model)


def model_label(model_path: str, quant: str = "") -> str:
    """How a local model is named in the chat: "SmolLM2-135M-Instruct Q4_1" (the file name, its quant
    once, at the end)."""
    stem = Path(model_path).name
    if stem.lower().endswith(".gguf"):
        stem = stem[:-5]
    if not quant:
        return stem
    match = re.match(rf"^(.*?)[._ -]{re.escape(quant)}$", stem, re.IGNORECASE)
    if match and match.group(1):
        return f"{match.group(1)} {quant}"
    return stem if quant.lower() in stem.lower() else f"{stem} {quant}"


class ChatSession(QObject):
    """Loads backends and streams replies; every outcome arrives as a signal on the UI thread.

    Two targets may be ready at once: the local engine (``engine``/``local_client``) and one remote
    server (``remote``). ``active`` ("local" | "remote") decides where the next message goes; a
    successful load makes "local" active, a successful connect "remote"; ``set_active`` switches.
    Connecting never stops the local engine, and a failed connect keeps the previous server.
    """

    sig_busy_changed = Signal()
    sig_ready = Signal(str)              # a line describing what is loaded
    sig_load_failed = Signal(object)     # WorkbenchError (or other exception)
    sig_load_cancelled = Signal()
    sig_target_changed = Signal()        # where the next message goes changed (see target_text)
    sig_text = Signal(str)               # throttled pieces of the reply being streamed
    sig_reply_done = Signal(object)      # runtime.chat.session.Turn (also after Stop), or None
    sig_reply_failed = Signal(object)    # the error; ``partial_reply``: the saved partial Message, ``turn``: its Turn
    sig_engine_died = Signal(object)     # EngineCrashed (EngineBuildMismatch on a first-prompt crash), once
    sig_reply_saved = Signal(object)     # the unsaved reply is saved now: its Message (None: chat deleted)
    sig_save_failed = Signal(object)     # StoreError: the unsaved reply failed again, no retry planned

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.engine = None               # runtime.engine.local.LocalEngine
        self.local_client = None         # its ChatClient (None once the engine died)
        self.local_model_ref = ""        # the local model's path
        self.local_label = ""            # e.g. "SmolLM2-135M-Instruct Q8_0"
        self.load_options = LoadOptions()
        self.remote = None               # runtime.engine.client.ChatClient of the connected server
        self.remote_name = ""            # its saved name ("" for an address typed in)
        self.remote_server_id: int | None = None
        self.active = "local"            # where the next message goes: "local" | "remote"
        self.request_extra: dict = {}    # extra request fields (benchmarks set {"ignore_eos": True})
        self._load_worker: Worker | None = None
        self._reply_worker: Worker | None = None
        self._death_reported = False
        self._pending: dict = {}
        self._turn_chat = None           # the ConversationSession of the last turn (running or ended)
        self.streamed_text = ""          # what the running (or last) reply streamed so far
        self.unsaved = None              # (ConversationSession, Turn) of a reply not saved yet
        self.kept_in_file: Path | None = None  # where shutdown wrote a reply it could not save
        self._save_worker: Worker | None = None
        self._save_attempts = 0
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.timeout.connect(self.retry_save)
        self._watch = QTimer(self)
        self._watch.setInterval(WATCH_MS)
        self._watch.timeout.connect(self._check_engine)

    # -- state ------------------------------------------------------------------------------------

    @property
    def loading(self) -> bool:
        return self._load_worker is not None and self._load_worker.running

    @property
    def loading_kind(self) -> str:
        """"local" or "remote" while a load or connect runs, else ""."""
        return self._pending.get("kind", "") if self.loading else ""

    @property
    def generating(self) -> bool:
        return self._reply_worker is not None and self._reply_worker.running

    @property
    def saving(self) -> bool:
        return self._save_worker is not None and self._save_worker.running

    @property
    def turn_conversation_id(self) -> int | None:
        """The conversation of the reply generating now (or of the last one)."""
        return self._turn_chat.conversation_id if self._turn_chat is not None else None

    @property
    def streaming_conversation_id(self) -> int | None:
        """The conversation a reply is being generated into now, else None."""
        return self.turn_conversation_id if self.generating else None

    @property
    def client(self):
        """The ChatClient the next message goes to (the active target's), or None."""
        return self.local_client if self.active == "local" else self.remote

    @property
    def backend(self) -> str:
        """The active target's kind when it has something loaded ("local" even if its engine died), else ""."""
        if self.active == "local":
            return "local" if self.engine is not None else ""
        return "remote" if self.remote is not None else ""

    @property
    def model_ref(self) -> str:
        """The active target's model: the local model's path, or the remote model name."""
        if self.backend == "local":
            return self.local_model_ref
        if self.backend == "remote":
            return getattr(self.remote, "model", "")
        return ""

    @property
    def remote_base_url(self) -> str:
        return self.remote.base_url if self.backend == "remote" else ""

    @property
    def local_ready(self) -> bool:
        return self.local_client is not None and self.engine is not None and self.engine.alive

    @property
    def ready(self) -> bool:
        """True when a reply can be requested now (from the active target).

        Also while another server is being checked: until it answers, the current target works.
        (Loading a local model stops the local engine first, so the local target is not ready then.)
        """
        if self.client is None:
            return False
        return self.active == "remote" or self.local_ready

    @property
    def engine_dead(self) -> bool:
        return self.engine is not None and not self.engine.alive

    def set_active(self, kind: str) -> None:
        """Send the next messages to "local" or "remote" (whether or not that target is ready)."""
        if kind not in ("local", "remote"):
            raise ValueError(kind)
        if kind != self.active:
            self.active = kind
            self.sig_target_changed.emit()
            self.sig_busy_changed.emit()

    def remote_text(self) -> str:
        """The connected server in words: "server 'Home GPU' (model x)"."""
        if self.remote is None:
            return ""
        where = f"server '{self.remote_name}'" if self.remote_name else f"the server at {self.remote.base_url}"
        model = getattr(self.remote, "model", "") or "its default model"
        return f"{where} (model {model})"

    def target_text(self) -> str:
        """One line saying where the next message goes, or why nothing will be sent."""
        if self.loading_kind == "local" and self.active == "local":
            return f"Loading {self._pending.get('label', 'the model')}… Nothing is sent until it is ready."
        if self.active == "remote":
            if self.remote is not None:
                return f"Messages go to: {self.remote_text()}."
            text = "Remote server: not connected. Nothing is sent until Connect succeeds."
            if self.local_ready:
                text += f" ({self.local_label} is still loaded on this computer: choose This computer to use it.)"
            return text
        if self.engine is None:
            text = "No model loaded on this computer: load one to chat."
            if self.remote is not None:
                text += f" (Still connected to {self.remote_text()}: choose Remote server to use it.)"
            return text
        if not self.local_ready:
            return f"The model engine stopped: reload {self.local_label} to continue. Nothing is sent meanwhile."
        return f"Messages go to: {self.local_label} on this computer."

    def describe(self) -> str:
        """One line saying what is loaded and, for a local model, where it runs: what llama.cpp reported
        doing (layers per device, buffer sizes), and what was asked for when it did otherwise."""
        if self.backend == "local":
            from runtime.engine.placement import PlacementReport

            setup = f"context {self.load_options.n_ctx:,}, {self.load_options.n_threads} threads"
            report = getattr(self.engine, "offload", None)
            if not isinstance(report, PlacementReport):  # an engine that does not report it
                placement = getattr(self.engine, "placement", "") or "placement unknown"
                return f"Loaded {self.local_label} on this computer: runs on {placement} ({setup})."
            text = f"Loaded {self.local_label} on this computer: runs on {report.summary()} ({setup})."
            requested = getattr(self.engine, "requested_gpu_layers", None)
            note = report.requested_note(requested if isinstance(requested, int) else None)
            return text + (f" {note[0].upper()}{note[1:]}." if note else "")
        if self.backend == "remote":
            return f"Connected to {self.remote_text()}."
        return "No model loaded."

    # -- loading ----------------------------------------------------------------------------------

    def load_local(self, model_path: str | Path, options: LoadOptions, label: str = "") -> None:
        """Start an engine for this model (stopping the current local one first; a remote stays)."""
        self._pending = {"kind": "local", "model_ref": str(model_path), "options": options,
                         "label": label or model_label(str(model_path))}
        self._begin_load(lambda job, old: _start_engine(job, old, str(model_path), options), "local")

    def connect_remote(self, base_url: str, api_key: str = "", model: str = "", name: str = "",
                       server_id: int | None = None, key_lookup=None) -> None:
        """Check the server, then use it for replies (the local engine keeps running)."""
        self._pending = {"kind": "remote", "name": name, "server_id": server_id}
        self._begin_load(lambda job, _old: _connect_remote(job, base_url, api_key, model, key_lookup), "remote")

    def reload(self) -> bool:
        """Start a new engine with the last local model and options; False if there is none."""
        if self.engine is None or not self.local_model_ref:
            return False
        self.load_local(self.local_model_ref, self.load_options, self.local_label)
        return True

    def cancel_load(self) -> None:
        if self._load_worker is not None:
            self._load_worker.cancel()

    def _begin_load(self, body, kind: str) -> None:
        if self.loading or self.generating:
            raise RuntimeError("busy: wait for the current load or reply to finish")
        old = None
        if kind == "local":
            old = self.engine
            self.engine = self.local_client = None
            self._watch.stop()
        self._load_worker = Worker(lambda job: body(job, old), name="engine-load")
        self._load_worker.sig_done.connect(self._on_loaded)
        self._load_worker.sig_failed.connect(self.sig_load_failed)
        self._load_worker.sig_cancelled.connect(self.sig_load_cancelled)
        self._load_worker.sig_finished.connect(self.sig_busy_changed)
        self._load_worker.sig_finished.connect(self.sig_target_changed)
        self._load_worker.start()
        self.sig_busy_changed.emit()
        self.sig_target_changed.emit()

    def _on_loaded(self, result) -> None:
        pending = self._pending
        if pending["kind"] == "local":
            self.engine, self.local_client = result, result.client()
            self.local_model_ref, self.local_label = pending["model_ref"], pending["label"]
            self.load_options = pending["options"]
            self._death_reported = False
            self._watch.start()
            self.active = "local"
        else:
            self.remote = result
            self.remote_name, self.remote_server_id = pending["name"], pending["server_id"]
            self.active = "remote"
        self.sig_ready.emit(self.describe())
        self.sig_target_changed.emit()

    # -- replies ----------------------------------------------------------------------------------

    def send(self, chat, text: str, params: SamplingParams) -> None:
        """Run ``chat.send`` (a runtime ConversationSession) on a worker; see ``_run_turn``."""
        self._run_turn(lambda job, extra: chat.send(text, params, job.text, job.cancel, extra), chat)

    def regenerate(self, chat, params: SamplingParams) -> None:
        self._run_turn(lambda job, extra: chat.regenerate(params, job.text, job.cancel, extra), chat)

    def edit_and_resend(self, chat, message_id: int, text: str, params: SamplingParams) -> None:
        self._run_turn(
            lambda job, extra: chat.edit_and_resend(message_id, text, params, job.text, job.cancel, extra), chat)

    def _run_turn(self, body, chat) -> None:
        """Stream one turn off the UI thread; it ends with sig_reply_done or sig_reply_failed.

        The turn's store writes (user message, reply) happen on the worker too, after saving the
        reply still unsaved, if any (a StoreError then fails the turn before anything is written).
        """
        if not self.ready or self.generating:
            raise RuntimeError("not ready: load a model first, and wait for the current reply")
        chat.client = self.client
        extra = dict(self.request_extra)
        unsaved = self.unsaved
        server_id = self.remote_server_id if self.active == "remote" else None

        def bind(job_chat):
            """Record which saved server (if any) answered: the conversation is bound to it."""
            try:
                if job_chat.conversation.remote_server_id != server_id:
                    job_chat.store.update_conversation(job_chat.conversation_id, remote_server_id=server_id)
            except StoreError:
                pass  # the turn's own writes report a database problem; this note is not worth a failure

        def run(job):
            chat.store.set_busy_timeout(TURN_BUSY_TIMEOUT_S)
            if unsaved is not None:
                unsaved[0].save_reply(unsaved[1])
            try:
                turn = body(job, extra)
            except BaseException as exc:
                if getattr(exc, "turn", None) is not None:
                    bind(chat)
                raise
            bind(chat)
            return turn

        self._save_timer.stop()
        self._turn_chat = chat
        self.streamed_text = ""
        self._reply_worker = Worker(run, name="chat-reply")
        self._reply_worker.sig_text.connect(self._on_text)
        self._reply_worker.sig_done.connect(self._on_reply_done)
        self._reply_worker.sig_failed.connect(self._on_reply_failed)
        self._reply_worker.sig_cancelled.connect(self._on_reply_cancelled)
        self._reply_worker.sig_finished.connect(self.sig_busy_changed)
        self._reply_worker.start()
        self.sig_busy_changed.emit()

    def _on_text(self, text: str) -> None:
        self.streamed_text += text
        self.sig_text.emit(text)

    def stop(self) -> None:
        """Stop the reply being generated; the saved partial reply still arrives through sig_reply_done."""
        if self._reply_worker is not None:
            self._reply_worker.cancel()

    def _on_reply_done(self, turn) -> None:
        self._keep_unsaved(turn)
        self.sig_reply_done.emit(turn)

    def _on_reply_failed(self, error) -> None:
        crashed = isinstance(error, EngineCrashed)
        if crashed and self.engine is not None:
            self.engine.wait_exit(1.0)  # let the process be reaped so exit_reason() can say why
        self._keep_unsaved(getattr(error, "turn", None))
        self.sig_reply_failed.emit(error)
        if crashed or self.engine_dead:
            self._report_death(error if crashed else None)

    def _on_reply_cancelled(self) -> None:
        self._keep_unsaved(None)
        self.sig_reply_done.emit(None)  # stopped before the reply began: nothing was written

    # -- replies not saved yet --------------------------------------------------------------------

    def _keep_unsaved(self, turn) -> None:
        """After a turn: forget the earlier unsaved reply if the turn saved it; keep this one if unsaved."""
        if self.unsaved is not None and self.unsaved[1].save_error is None:
            saved, self.unsaved = self.unsaved[1].reply, None
            self.sig_reply_saved.emit(saved)
        if turn is not None and turn.save_error is not None:
            if turn.save_error.facts.get("conversation_id") == self.turn_conversation_id:
                turn.save_error = None  # its conversation was deleted meanwhile: the reply goes with it
                return
            self.unsaved, self._save_attempts = (self._turn_chat, turn), 0
            self._save_timer.start(SAVE_RETRY_DELAYS_MS[0])

    def retry_save(self) -> bool:
        """Try to save the unsaved reply now, on a worker. False when there is none or a turn or save runs."""
        if self.unsaved is None or self.saving or self.generating:
            return False
        self._save_timer.stop()
        chat, turn = self.unsaved

        def save(_job):
            chat.store.set_busy_timeout(SAVE_BUSY_TIMEOUT_S)
            return chat.save_reply(turn)

        self._save_worker = Worker(save, name="chat-save")
        self._save_worker.sig_done.connect(self._on_saved)
        self._save_worker.sig_failed.connect(self._on_save_failed)
        self._save_worker.start()
        return True

    def _on_saved(self, message) -> None:
        if self.unsaved is not None and self.unsaved[1].save_error is None:
            self.unsaved = None
            self.sig_reply_saved.emit(message)

    def _on_save_failed(self, error) -> None:
        self._save_attempts += 1
        if self.unsaved is None or self.generating:
            return  # the turn running saves it first, or says why it cannot
        if self._save_attempts < len(SAVE_RETRY_DELAYS_MS):
            self._save_timer.start(SAVE_RETRY_DELAYS_MS[self._save_attempts])
        else:
            self.sig_save_failed.emit(error)

    # -- engine watch -----------------------------------------------------------------------------

    def _check_engine(self) -> None:
        if self.engine_dead and not self.generating:
            self._report_death()

    def _report_death(self, error: EngineCrashed | None = None) -> None:
        self._watch.stop()
        if self._death_reported or self.engine is None:
            return
        self._death_reported = True
        self.local_client = None
        self.sig_engine_died.emit(error or self.engine.crash_error("idle"))
        self.sig_busy_changed.emit()

    # -- shutdown ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop any reply or load, join their threads, try once more to save an unsaved reply, and
        stop the engine process."""
        self._watch.stop()
        for worker in (self._reply_worker, self._load_worker, self._save_worker):
            if worker is not None and worker.running:
                worker.cancel()
                worker.wait()
        self._save_timer.stop()
        if self.unsaved is not None:
            chat, turn = self.unsaved
            try:
                chat.save_reply(turn)
            except StoreError:
                self.kept_in_file = chat.keep_in_file(turn)  # never lost, even on quit
            self.unsaved = None
        if self.engine is not None:
            self.engine.stop()
