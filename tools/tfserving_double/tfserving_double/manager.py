"""The model manager: config, aspired versions, loading/unloading, labels and the state monitor.

ServableStateMonitor + AspiredVersionsManager + AvailabilityPreservingPolicy (reference §1.4, §4.2, §5).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import STATES, TFError, invalid, servable_request
from .metrics import Metrics
from .model_config import ModelSpecConfig
from .options import ServerOptions
from .servable import Servable, load_servable
from .version_dirs import aspired_versions
from .warmup import run_warmup


@dataclasses.dataclass
class VersionRecord:
    """What the monitor knows about one version; records are never removed (§1.4)."""

    state: str
    path: str
    error_code: str = "OK"
    error_message: str = ""
    aspired: bool = True
    in_manager: bool = True  # False once unloaded / dropped by the manager
    servable: Servable | None = None  # while loaded



class ModelManager:
    """Config, version discovery, loading/unloading and labels; shared by the REST layer."""

    def __init__(self, options: ServerOptions, log: Callable[[str, str, str], None], metrics: Metrics):
        self.options, self._log, self.metrics = options, log, metrics
        self._cond = threading.Condition()  # guards everything below
        self._models: dict[str, ModelSpecConfig] = {}
        self._monitor: dict[str, dict[int, VersionRecord]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._cycle_lock = threading.Lock()  # one poll/load cycle at a time (single manager thread)
        self.stopping = threading.Event()

    # -- queries used by REST --------------------------------------------------------------------------------

    def version_states(self, name: str) -> dict[int, VersionRecord]:
        with self._cond:
            return {v: dataclasses.replace(r) for v, r in self._monitor.get(name, {}).items()}

    def resolve(self, name: str, version: int | None, label: str | None) -> tuple[int, VersionRecord]:
        """ServerCore::GetServableHandle: label lookup, then Latest/Specific among AVAILABLE ones (§1.6)."""
        with self._cond:
            if label is not None:
                if label not in self._labels.get(name, {}):
                    raise invalid(f"Unrecognized servable version label: {label}")
                version = self._labels[name][label]
            available = {v: r for v, r in self._monitor.get(name, {}).items() if r.state == "AVAILABLE"}
            chosen = max(available) if version is None and available else version
            if chosen is None or chosen not in available:
                request = servable_request(name, version)
                raise TFError("NOT_FOUND", f"Servable not found for request: {request}")
            return chosen, dataclasses.replace(available[chosen])

    def labels(self, name: str) -> dict[str, int]:
        with self._cond:
            return dict(self._labels.get(name, {}))

    def model_names(self) -> list[str]:
        with self._cond:
            return list(self._models)

    # -- configuration ---------------------------------------------------------------------------------------

    def apply_config(self, models: list[ModelSpecConfig], *, initial: bool) -> list[str]:
        """ServerCore::ReloadConfig minus the waiting: labels first (§4.2), then the model set.

        Returns the names of newly added models (the caller waits for them). Removed models are un-aspired
        right away; every other change takes effect on the poll that follows.
        """
        with self._cond:
            self._labels = self._checked_labels(models)
            old = self._models
            self._models = {m.name: m for m in models}
            removed = [n for n in old if n not in self._models]
            added = [n for n in self._models if n not in old]
        if not initial:
            self._log("I", "server_core.cc", "Adding/updating models.")
        for name in removed:
            with self._cycle_lock:
                self._apply_aspired(name, {})
        return added

    def _checked_labels(self, models: list[ModelSpecConfig]) -> dict[str, dict[str, int]]:
        """UpdateModelVersionLabelMap: every label must name an AVAILABLE version, unless the allow flag
        is set and the label is new or unchanged (moving a label always needs an AVAILABLE target)."""
        new: dict[str, dict[str, int]] = {}
        for m in models:
            states = self._monitor.get(m.name, {})
            for label, version in m.labels:
                previous = self._labels.get(m.name, {}).get(label)
                allow = self.options.allow_version_labels_for_unavailable_models
                exempt = allow and previous in (None, version)
                rec = states.get(version)
                if not exempt and (rec is None or rec.state != "AVAILABLE"):
                    raise TFError("FAILED_PRECONDITION",
                                  f"Request to assign label to version {version} of model {m.name}, which is "
                                  f"not currently available for inference")
                new.setdefault(m.name, {})[label] = version
        return new

    # -- file-system polling (§5) ----------------------------------------------------------------------------

    def poll_once(self) -> None:
        """One FileSystemStoragePathSource poll for all models, then the manager's load/unload actions.

        Any model's missing base path aborts the whole poll: no model gets an update (§5, derived).
        """
        with self._cycle_lock:
            with self._cond:
                models = list(self._models.values())
            aspired: dict[str, dict[int, str]] = {}
            for m in models:
                try:
                    aspired[m.name] = aspired_versions(m, self._log)
                except TFError as e:
                    self._log("E", "file_system_storage_path_source.cc",
                              "FileSystemStoragePathSource encountered a filesystem access error: "
                              + e.message)
                    return
            for name, versions in aspired.items():
                if self.stopping.is_set():
                    return
                self._apply_aspired(name, versions)

    def _apply_aspired(self, name: str, aspired: dict[int, str]) -> None:
        """AspiredVersionsManager: record the aspired set, then act until the policy has nothing to do."""
        with self._cond:
            recs = self._monitor.setdefault(name, {})
            for v, rec in recs.items():
                if rec.in_manager:
                    rec.aspired = v in aspired
                    if not rec.aspired and rec.state in ("START", "END"):
                        rec.in_manager = False  # never loaded, or failed: just dropped
                        rec.state = "END"
            for v, path in aspired.items():
                if v not in recs or not recs[v].in_manager:
                    recs[v] = VersionRecord(state="START", path=path)
            self._cond.notify_all()
        while not self.stopping.is_set():
            action = self._next_action(name)
            if action is None:
                return
            kind, version = action
            if kind == "unload":
                self._unload(name, version)
            else:
                self._load(name, version)

    def _next_action(self, name: str) -> tuple[str, int] | None:
        """AvailabilityPreservingPolicy: unload only when availability is kept, load the newest first."""
        with self._cond:
            recs = {v: r for v, r in self._monitor.get(name, {}).items() if r.in_manager}
        has_aspired = any(r.aspired for r in recs.values())
        aspired_serving = any(r.aspired and r.state == "AVAILABLE" for r in recs.values())
        unaspired_serving = [v for v, r in recs.items() if not r.aspired and r.state == "AVAILABLE"]
        if unaspired_serving and (not has_aspired or aspired_serving or len(unaspired_serving) > 1):
            return "unload", min(unaspired_serving)
        new = [v for v, r in recs.items() if r.aspired and r.state == "START"]
        return ("load", max(new)) if new else None

    def _set(self, name: str, version: int, **changes: Any) -> None:
        with self._cond:
            rec = self._monitor[name][version]
            for k, v in changes.items():
                setattr(rec, k, v)
            self._cond.notify_all()

    def _unload(self, name: str, version: int) -> None:
        self._set(name, version, state="UNLOADING")
        self._log("I", "loader_harness.cc", f"Unloading servable version {{name: {name} version: {version}}}")
        # The servable is dropped, not closed: requests still running hold their own reference.
        self._set(name, version, state="END", in_manager=False, servable=None)
        self._log("I", "loader_harness.cc",
                  f"Done unloading servable version {{name: {name} version: {version}}}")

    def _load_and_warm_up(self, path: str) -> Servable:
        """SavedModelBundle load, then the warmup replay inside the load (§6): either failing fails it."""
        o = self.options
        threads = (o.intra_op_parallelism, o.inter_op_parallelism)
        servable = load_servable(path, o.saved_model_tags, threads)
        if o.enable_model_warmup and not servable.placeholder:
            started = time.monotonic()
            status = "OK"
            try:
                run_warmup(servable, o.num_request_iterations_for_warmup, self._log)
            except TFError as e:
                status = e.code
                raise
            finally:
                micros = (time.monotonic() - started) * 1e6
                self.metrics.observe("/tensorflow/serving/model_warmup_latency",
                                     {"model_path": path, "status": status}, micros)
        return servable

    def _load(self, name: str, version: int) -> None:
        """LOADING for the simulated delay, then AVAILABLE, or END with the error after the retries."""
        with self._cond:
            path = self._monitor[name][version].path
        self._set(name, version, state="LOADING")
        self._log("I", "loader_harness.cc", f"Loading servable version {{name: {name} version: {version}}}")
        if self.stopping.wait(self.options.load_delay_seconds):
            return
        error = None
        for attempt in range(self.options.max_num_load_retries + 1):
            if attempt and self.stopping.wait(self.options.load_retry_interval_seconds):
                return
            try:
                servable = self._load_and_warm_up(path)
                error = None
                break
            except TFError as e:
                error = e
                self.metrics.inc("/tensorflow/cc/saved_model/load_attempt_count",
                                 {"model_path": path, "status": "fail"})
                self._log("E", "loader_harness.cc", f"Loading servable: {{name: {name} version: {version}}} "
                                                    f"failed: {e}")
        if error is None:
            self.metrics.inc("/tensorflow/cc/saved_model/load_attempt_count",
                             {"model_path": path, "status": "success"})
            self._set(name, version, state="AVAILABLE", servable=servable)
            self._log("I", "loader_harness.cc",
                      f"Successfully loaded servable version {{name: {name} version: {version}}}")
        else:
            self._set(name, version, state="END", error_code=error.code, error_message=error.message)

    # -- waiting ---------------------------------------------------------------------------------------------

    def wait_models(self, names: list[str], timeout: float | None = None) -> list[str] | None:
        """WaitUntilServablesReachState(Latest(name)...): until each model has an AVAILABLE version or its
        newest version ended in error. Returns the failed names, or None on timeout/stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                pending, failed = [], []
                for n in names:
                    outcome = self._model_outcome(n)
                    (pending if outcome is None else failed if outcome else []).append(n)
                if not pending:
                    return failed
                if self.stopping.is_set():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(0.2 if remaining is None else min(remaining, 0.2))

    def _model_outcome(self, name: str) -> bool | None:
        """None = still waiting; False = available; True = failed (newest known version in END with error)."""
        recs = self._monitor.get(name, {})
        if any(r.state == "AVAILABLE" for r in recs.values()):
            return False
        aspired = [v for v, r in recs.items() if r.in_manager and r.aspired]
        if aspired and recs[max(aspired)].state == "END" and recs[max(aspired)].error_code != "OK":
            return True
        return None

    def wait_for_state(self, name: str, version: int, state: str, timeout: float) -> bool:
        """Test helper: block until version ``version`` of ``name`` is in ``state``."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                rec = self._monitor.get(name, {}).get(version)
                if rec is not None and rec.state == state:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.2))


