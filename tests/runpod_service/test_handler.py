"""The RunPod handler driven in-process, as RunPod's worker drives it: an async generator on an
event loop, with TensorFlow-free trial functions (``RUNPOD_TRIAL_FUNCTION``)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runpod_service import handler as runpod_handler
from workers.engine.messages import TrialResult, TrialSpec

FAKE = "tests.workers.engine.fake_trial_process:run"
WITH_MODEL = "tests.runpod_service:run_with_model"


def spec_input(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(study_id=1, trial_id=7, trial_number=0, dataset="digits", params={})
    fields.update(changes)
    return TrialSpec(**fields).to_dict()


def collect(job_input: Any, job_id: str = "job-1") -> list[dict[str, Any]]:
    async def drive() -> list[dict[str, Any]]:
        return [item async for item in runpod_handler.handler({"id": job_id, "input": job_input})]

    return asyncio.run(drive())


@pytest.fixture
def trial_function(monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(target: str) -> None:
        monkeypatch.setenv("RUNPOD_TRIAL_FUNCTION", target)

    monkeypatch.setenv("RUNPOD_PROGRESS_SECONDS", "0")
    use(FAKE)
    return use


@pytest.fixture
def upload_server() -> Iterator[dict[str, Any]]:
    """A presigned-URL stand-in: PUT /ok stores the body, PUT /denied answers 403."""
    received: dict[str, Any] = {}

    class Upload(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path.startswith("/ok"):
                received["body"], received["type"] = body, self.headers["Content-Type"]
            self.send_response(200 if self.path.startswith("/ok") else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Upload)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    received["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield received
    server.shutdown()
    server.server_close()


def test_a_trial_streams_its_messages_and_ends_with_its_result(trial_function: Any) -> None:
    items = collect(spec_input())
    kinds = [item["type"] for item in items]
    assert kinds[0] == "trial.started" and kinds[-1] == "trial.result"
    assert kinds.count("trial.epoch") == 3 and kinds.count("trial.progress") == 30
    result = TrialResult.from_dict(items[-1])
    assert result.status == "complete" and result.accuracy == pytest.approx(0.3)


def test_progress_is_throttled_but_epochs_and_the_result_are_not(trial_function: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_PROGRESS_SECONDS", "60")
    kinds = [item["type"] for item in collect(spec_input())]
    assert kinds.count("trial.progress") == 1 and kinds.count("trial.epoch") == 3 and kinds[-1] == "trial.result"


def test_the_worker_trains_without_a_pruner_and_passes_the_gpus_through(trial_function: Any) -> None:
    trial_function(WITH_MODEL)
    items = collect(spec_input(gpus=[0, 1], wait_for_pruner=True, artifacts_dir="/platform/path"))
    seen = json.loads(items[0]["worker"])
    assert seen["wait_for_pruner"] is False and seen["gpus"] == [0, 1]
    assert seen["artifacts_dir"] != "/platform/path"
    assert not Path(seen["artifacts_dir"]).exists(), "the job's temporary folder is removed"


def test_an_oversized_spec_is_refused_naming_the_limit(trial_function: Any) -> None:
    items = collect(spec_input(params={"note": "x" * 1200}))
    assert len(items) == 1 and "over the 1024-byte limit" in items[0]["error"]


@pytest.mark.parametrize(
    ("job_input", "named"),
    [
        ("not a spec", "must be a JSON object"),
        ({"type": "trial.spec", "version": 1, "study_id": 1}, "missing 4 required positional arguments"),
        ({**spec_input(), "colour": "red"}, "unknown fields: ['colour']"),
        ({**spec_input(), "version": 99}, "version 99"),
        (spec_input(max_epochs="ten"), "max_epochs must be int"),
        (spec_input(gpus=["a"]), "gpus must be a list of device ids"),
        ({**spec_input(), "model_upload_url": "ftp://x"}, "model_upload_url must be an http(s) URL"),
    ],
)
def test_an_invalid_spec_is_refused_naming_the_problem(trial_function: Any, job_input: Any, named: str) -> None:
    items = collect(job_input)
    assert len(items) == 1 and named in items[0]["error"]


def test_a_misconfigured_trial_function_is_an_error_naming_the_variable(trial_function: Any) -> None:
    trial_function("no_such_module:run")
    [item] = collect(spec_input())
    assert "RUNPOD_TRIAL_FUNCTION='no_such_module:run' cannot be loaded" in item["error"]


def test_the_model_is_inlined_with_its_details(trial_function: Any) -> None:
    trial_function(WITH_MODEL)
    items = collect(spec_input(params={"model_bytes": 5000}))
    artifacts, result = items[-2], items[-1]
    assert artifacts["type"] == "runpod.artifacts" and artifacts["details"]["gradient_norms"] == {"dense": [0.5]}
    model = artifacts["model"]
    content = base64.b64decode(model["base64"])
    assert model["delivery"] == "inline" and model["size_bytes"] == len(content) == 5000
    assert model["sha256"] == hashlib.sha256(content).hexdigest()
    assert result["type"] == "trial.result" and result["artifacts"] == {}


def test_a_model_too_big_to_inline_is_left_out_and_says_so(trial_function: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    trial_function(WITH_MODEL)
    monkeypatch.setenv("RUNPOD_INLINE_MODEL_MAX_BYTES", "4000")
    model = collect(spec_input(params={"model_bytes": 5000}))[-2]["model"]
    assert model["delivery"] == "not_included" and model["base64"] is None and model["size_bytes"] == 5000
    assert "larger than RUNPOD_INLINE_MODEL_MAX_BYTES" in model["note"] and "model_upload_url" in model["note"]


def test_the_model_is_put_to_the_presigned_url(trial_function: Any, upload_server: dict[str, Any]) -> None:
    trial_function(WITH_MODEL)
    model = collect({**spec_input(params={"model_bytes": 3000}), "model_upload_url": upload_server["url"] + "/ok?sig=1"})[-2]["model"]
    assert model["delivery"] == "uploaded" and model["size_bytes"] == 3000 and model["base64"] is None
    assert len(upload_server["body"]) == 3000 and upload_server["type"] == "application/octet-stream"


def test_a_failed_upload_falls_back_to_inline_and_says_so(trial_function: Any, upload_server: dict[str, Any]) -> None:
    trial_function(WITH_MODEL)
    model = collect({**spec_input(), "model_upload_url": upload_server["url"] + "/denied"})[-2]["model"]
    assert model["delivery"] == "inline" and "403" in model["upload_error"]
    assert model["note"].startswith("Uploading to model_upload_url failed")


def test_cancelling_the_job_task_stops_the_trial(trial_function: Any) -> None:
    """What RunPod's worker does on a cancel: it cancels the job's task."""

    async def drive() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []

        async def consume() -> None:
            async for item in runpod_handler.handler({"id": "job-slow", "input": spec_input(params={"behaviour": "slow"})}):
                items.append(item)

        task = asyncio.create_task(consume())
        while len(items) < 3:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return items

    items = asyncio.run(drive())
    assert items[0]["type"] == "trial.started"
    assert not [t for t in threading.enumerate() if t.name == "trial-job-slow"], "the training thread has ended"
    assert not runpod_handler.is_cancelled("job-slow")


def test_the_cancel_flag_stops_the_trial_which_reports_cancelled(trial_function: Any) -> None:
    async def drive() -> list[dict[str, Any]]:
        items = []
        async for item in runpod_handler.handler({"id": "job-flag", "input": spec_input(params={"behaviour": "slow"})}):
            items.append(item)
            if len(items) == 3:
                runpod_handler.cancel("job-flag")
        return items

    result = asyncio.run(drive())[-1]
    assert result["type"] == "trial.result" and result["status"] == "cancelled"


def test_concurrency_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = runpod_handler.serverless_config()
    assert config["return_aggregate_stream"] is True and config["handler"] is runpod_handler.handler
    assert config["concurrency_modifier"](1) == 1
    monkeypatch.setenv("RUNPOD_CONCURRENCY", "3")
    assert config["concurrency_modifier"](1) == 3


def test_the_handler_imports_neither_django_nor_tensorflow() -> None:
    code = (
        "import sys, runpod_service.handler as h; h.trial_function();"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'tensorflow', 'keras'}))"
    )
    root = Path(__file__).resolve().parents[2]
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert imported.strip() == "[]"
