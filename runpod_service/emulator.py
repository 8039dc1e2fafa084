"""A local stand-in for a RunPod serverless endpoint, for development and tests.

``python -m runpod_service.emulator --port 8000 --workers 2`` serves RunPod's cloud routes
exactly as the SDK client (``runpod.Endpoint``) calls them, under ``http://HOST:PORT/v2``:

    POST      /v2/<endpoint>/run            {"input": ..., "policy": {"executionTimeout": ms}?}
    POST      /v2/<endpoint>/runsync        the same; waits up to 90 s (``?wait=ms``) for the end
    GET|POST  /v2/<endpoint>/status/<job>   {"id", "status", "delayTime", "executionTime", "workerId",
                                             "output" | "error"}
    GET|POST  /v2/<endpoint>/stream/<job>   {"status", "stream": [{"output": item}, ...]}: items since the last call
    POST      /v2/<endpoint>/cancel/<job>   {"id", "status"}
    GET       /v2/<endpoint>/health         {"jobs": {...}, "workers": {"idle", "running", ...}}
    POST      /v2/<endpoint>/purge-queue    {"removed", "status"}

Jobs run the real handler (``runpod_service.handler.serverless_config()``) in K worker
processes (``--serve-worker``, one per RunPod worker), so trainings run in parallel and each
worker takes up to its ``concurrency_modifier`` jobs at once. A worker speaks JSON lines with
the emulator: ``{"op": "job"|"cancel"}`` in; ``ready``, ``started``, ``item``, ``done`` out.
A cancel raises the handler's cancel flag and cancels the job's task, as RunPod's worker does;
the worker's slot stays busy until the trial has actually stopped. A worker that dies fails its
jobs and is replaced.

As on RunPod, a generator handler's yielded items are the stream; with
``return_aggregate_stream`` the job's output is the list of them; a yielded ``{"error": ...}``
or an exception ends the job FAILED. Statuses: IN_QUEUE (also during a worker's cold start),
IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT.

Thread-safety: all state sits behind one condition; HTTP requests are served by threads.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

FINAL_STATUSES = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
ROOT = Path(__file__).resolve().parents[1]
_ROUTE = re.compile(
    r"^/v2/(?P<endpoint>[^/]+)/(?P<action>run|runsync|status|stream|cancel|health|purge-queue)(?:/(?P<job>[^/]+))?/?$"
)
_METHODS = {
    "run": ("POST",), "runsync": ("POST",), "status": ("GET", "POST"), "stream": ("GET", "POST"),
    "cancel": ("POST",), "health": ("GET",), "purge-queue": ("POST",),
}
Reply = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Failures:
    """Injected failures. ``first_runs``: the first N /run and /runsync calls answer ``status``
    (a 5xx) without creating a job; ``rate``: after those, each does with this probability;
    ``job_errors``: the first N accepted jobs end FAILED with an injected error, unrun."""

    first_runs: int = 0
    rate: float = 0.0
    status: int = 503
    job_errors: int = 0
    seed: int | None = None


@dataclass
class _Job:
    id: str
    input: Any
    created: float
    timeout: float | None
    status: str = "IN_QUEUE"
    worker: int | None = None
    started: float | None = None
    finished: float | None = None
    items: list[Any] = field(default_factory=list)
    streamed: int = 0
    error: str | None = None
    injected_failure: bool = False

    def finish(self, status: str, error: str | None = None) -> None:
        self.status, self.error, self.finished = status, error, time.time()

    def body(self, aggregate: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started is not None:
            body["delayTime"] = round((self.started - self.created) * 1000)
            body["executionTime"] = round(((self.finished or time.time()) - self.started) * 1000)
        if self.worker is not None:
            body["workerId"] = f"emulator-worker-{self.worker}"
        if self.status == "COMPLETED":
            body["output"] = list(self.items) if aggregate else None
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[str]
    ready: bool = False
    warm: bool = False
    capacity: int = 1
    aggregate: bool = True
    jobs: set[str] = field(default_factory=set)

    def send(self, command: dict[str, Any]) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):  # it is dying; its reader fails its jobs
            pass


class Emulator:
    """The emulated endpoint; ``with Emulator(workers=2) as cloud:`` starts it on a free port
    and waits for the workers; ``cloud.url`` is the SDK's ``endpoint_url_base``."""

    def __init__(self, workers: int = 1, *, cold_start: float = 0.0, failures: Failures | None = None,
                 endpoint: str = "local", api_key: str | None = None, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int = 0, execution_timeout: float | None = None,
                 runsync_wait: float = 90.0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be 1 or more; got {workers}.")
        if not 0 <= (failures or Failures()).rate <= 1:
            raise ValueError("failures.rate must lie between 0 and 1.")
        self.workers, self.cold_start, self.failures = workers, cold_start, failures or Failures()
        self.endpoint, self.api_key, self.env, self.host = endpoint, api_key, dict(env or {}), host
        self.execution_timeout, self.runsync_wait = execution_timeout, runsync_wait
        self._requested_port = port
        self._state = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[str] = deque()
        self._workers: list[_Worker] = []
        self._run_calls = self._accepted = 0
        self._random = random.Random(self.failures.seed)
        self._server: ThreadingHTTPServer | None = None
        self._stopping = False

    @property
    def port(self) -> int:
        assert self._server is not None, "start the emulator first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v2"

    # -- life ------------------------------------------------------------------------------
    def start(self, *, wait_ready: bool = True, timeout: float = 120.0) -> Emulator:
        with self._state:
            self._workers = [self._spawn(index) for index in range(self.workers)]
        self._server = ThreadingHTTPServer((self.host, self._requested_port), _request_handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="runpod-emulator-http", daemon=True).start()
        threading.Thread(target=self._watch_timeouts, name="runpod-emulator-timeouts", daemon=True).start()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        with self._state:
            if not self._state.wait_for(lambda: all(w.ready for w in self._workers), timeout):
                raise TimeoutError(f"the emulator's workers were not ready within {timeout:g} s")

    def stop(self) -> None:
        with self._state:
            self._stopping = True
            workers = list(self._workers)
            self._state.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for worker in workers:
            with contextlib.suppress(OSError, ValueError):
                worker.process.stdin.close()  # type: ignore[union-attr]  # the worker's cue to end
        for worker in workers:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def sdk(self) -> Iterator[Any]:
        """``runpod.Endpoint`` for this emulator; restores ``runpod.api_key`` and ``endpoint_url_base``."""
        import runpod

        saved = runpod.api_key, runpod.endpoint_url_base
        runpod.api_key, runpod.endpoint_url_base = self.api_key or "emulator-key", self.url
        try:
            yield runpod.Endpoint(self.endpoint)
        finally:
            runpod.api_key, runpod.endpoint_url_base = saved

    # -- what tests read ---------------------------------------------------------------------
    def job(self, job_id: str) -> dict[str, Any]:
        """A job's record: status, worker index, created/started/finished (epoch seconds), items, error."""
        with self._state:
            job = self._jobs[job_id]
            return {"id": job.id, "status": job.status, "worker": job.worker, "created": job.created,
                    "started": job.started, "finished": job.finished, "items": len(job.items), "error": job.error}

    def wait_job(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        with self._state:
            self._state.wait_for(lambda: self._jobs[job_id].status in FINAL_STATUSES, timeout)
        return self.job(job_id)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """True once every worker is ready and runs nothing (cancelled trials have stopped)."""
        with self._state:
            return self._state.wait_for(lambda: all(w.ready and not w.jobs for w in self._workers), timeout)

    # -- workers -------------------------------------------------------------------------------
    def _spawn(self, index: int) -> _Worker:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **self.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "runpod_service.emulator", "--serve-worker",
                   "--cold-start", str(self.cold_start)]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                   encoding="utf-8", bufsize=1)
        worker = _Worker(index, process)
        threading.Thread(target=self._read_worker, args=(worker,), name=f"runpod-emulator-worker-{index}",
                         daemon=True).start()
        return worker

    def _read_worker(self, worker: _Worker) -> None:
        assert worker.process.stdout is not None
        for line in worker.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                logger.warning("worker %d: ignored a bad line %.200r", worker.index, line)
                continue
            with self._state:
                self._on_event(worker, event)
                self._state.notify_all()
        code = worker.process.wait()
        with self._state:
            for job_id in worker.jobs:
                job = self._jobs[job_id]
                if job.status not in FINAL_STATUSES:
                    job.finish("FAILED", f"The worker running this job died (exit code {code}).")
            worker.jobs.clear()
            if not self._stopping and self._workers[worker.index] is worker:
                logger.warning("worker %d died (exit code %d); starting another", worker.index, code)
                self._workers[worker.index] = self._spawn(worker.index)
            self._state.notify_all()

    def _on_event(self, worker: _Worker, event: dict[str, Any]) -> None:
        kind, job = event.get("event"), self._jobs.get(event.get("id", ""))
        if kind == "ready":
            worker.ready, worker.capacity, worker.aggregate = True, int(event["concurrency"]), bool(event["aggregate"])
        elif kind == "started" and job is not None:
            worker.warm = True
            if job.status == "IN_QUEUE":
                job.status, job.started = "IN_PROGRESS", time.time()
        elif kind == "item" and job is not None and job.status == "IN_PROGRESS":
            job.items.append(event["output"])
        elif kind == "done" and job is not None:
            worker.jobs.discard(job.id)
            if job.status not in FINAL_STATUSES:
                job.finish("FAILED" if event.get("error") else "COMPLETED", event.get("error"))
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand queued jobs to workers with a free slot, warm ones first (state lock held)."""
        while self._queue:
            job = self._jobs[self._queue[0]]
            if job.status != "IN_QUEUE":
                self._queue.popleft()
                continue
            if job.injected_failure:
                self._queue.popleft()
                job.started = time.time()
                job.finish("FAILED", "emulator: injected job failure")
                continue
            free = [w for w in self._workers if w.ready and w.process.poll() is None and len(w.jobs) < w.capacity]
            if not free:
                return
            worker = min(free, key=lambda w: (not w.warm, len(w.jobs), w.index))
            self._queue.popleft()
            worker.jobs.add(job.id)
            job.worker = worker.index
            worker.send({"op": "job", "job": {"id": job.id, "input": job.input}})

    def _stop_on_worker(self, job: _Job) -> None:
        if job.worker is not None and job.id in self._workers[job.worker].jobs:
            self._workers[job.worker].send({"op": "cancel", "id": job.id})

    def _watch_timeouts(self) -> None:
        with self._state:
            while not self._stopping:
                now = time.time()
                for job in self._jobs.values():
                    if job.status == "IN_PROGRESS" and job.timeout is not None and now - job.started > job.timeout:
                        job.finish("TIMED_OUT")
                        self._stop_on_worker(job)
                        self._state.notify_all()
                self._state.wait(0.1)

    # -- the routes --------------------------------------------------------------------------
    def handle(self, method: str, path: str, authorization: str | None, raw_body: bytes) -> Reply:
        """Answer one HTTP request: (status code, JSON body)."""
        parts = urlsplit(path)
        match = _ROUTE.match(parts.path)
        if match is None:
            return 404, {"error": f"No route {parts.path}; the routes are /v2/<endpoint>/run, runsync, status/<id>, "
                                  "stream/<id>, cancel/<id>, health and purge-queue."}
        if self.api_key is not None and authorization not in (self.api_key, f"Bearer {self.api_key}"):
            return 401, {"error": "Unauthorized: the Authorization header does not carry this endpoint's API key."}
        if match["endpoint"] != self.endpoint:
            return 404, {"error": f"Endpoint {match['endpoint']!r} not found; this emulator serves {self.endpoint!r}."}
        action, job_id = match["action"], match["job"]
        if method not in _METHODS[action]:
            return 405, {"error": f"{action} takes {' or '.join(_METHODS[action])}, not {method}."}
        if (job_id is None) == (action in ("status", "stream", "cancel")):
            return 404, {"error": f"No route {parts.path}."}
        if action in ("run", "runsync"):
            return self._submit(raw_body, wait=action == "runsync", query=parse_qs(parts.query))
        if action == "health":
            return 200, self._health()
        if action == "purge-queue":
            return 200, self._purge()
        with self._state:
            job = self._jobs.get(job_id)
            if job is None:
                return 404, {"error": f"Job {job_id!r} not found."}
            if action == "cancel" and job.status in ("IN_QUEUE", "IN_PROGRESS"):
                job.finish("CANCELLED")
                self._stop_on_worker(job)
                self._state.notify_all()
            if action == "stream":
                new, job.streamed = job.items[job.streamed:], len(job.items)
                reply = {"status": job.status, "stream": [{"output": item} for item in new]}
                return 200, {**reply, "error": job.error} if job.error else reply
            if action == "cancel":
                return 200, {"id": job.id, "status": job.status}
            return 200, job.body(self._aggregate(job))

    def _aggregate(self, job: _Job) -> bool:
        return job.worker is None or self._workers[job.worker].aggregate

    def _submit(self, raw_body: bytes, *, wait: bool, query: dict[str, list[str]]) -> Reply:
        with self._state:
            self._run_calls += 1
            injected = self._run_calls <= self.failures.first_runs or self._random.random() < self.failures.rate
        if injected:
            return self.failures.status, {"error": f"emulator: injected failure (HTTP {self.failures.status})"}
        try:
            body = json.loads(raw_body or b"null")
        except ValueError as error:
            return 400, {"error": f"The request body is not JSON: {error}"}
        if not isinstance(body, dict) or "input" not in body:
            return 400, {"error": "The request body must be a JSON object with an 'input' field."}
        timeout_ms = (body.get("policy") or {}).get("executionTimeout")
        timeout = timeout_ms / 1000 if isinstance(timeout_ms, (int, float)) else self.execution_timeout
        job = _Job(id=f"{uuid.uuid4()}-e1", input=body["input"], created=time.time(), timeout=timeout)
        with self._state:
            self._accepted += 1
            job.injected_failure = self._accepted <= self.failures.job_errors
            self._jobs[job.id] = job
            self._queue.append(job.id)
            self._dispatch()
            if not wait:
                return 200, {"id": job.id, "status": job.status}
            seconds = min(float(query.get("wait", [self.runsync_wait * 1000])[0]) / 1000, self.runsync_wait)
            self._state.wait_for(lambda: job.status in FINAL_STATUSES, seconds)
            return 200, job.body(self._aggregate(job))

    def _health(self) -> dict[str, Any]:
        with self._state:
            statuses = [job.status for job in self._jobs.values()]
            workers = [w for w in self._workers if w.process.poll() is None]
            running = sum(1 for w in workers if w.jobs and w.warm)
            idle = sum(1 for w in workers if w.ready and not w.jobs)
        return {
            "jobs": {"completed": statuses.count("COMPLETED"),
                     "failed": statuses.count("FAILED") + statuses.count("TIMED_OUT"),
                     "inProgress": statuses.count("IN_PROGRESS"), "inQueue": statuses.count("IN_QUEUE"), "retried": 0},
            "workers": {"idle": idle, "running": running, "initializing": len(workers) - idle - running,
                        "ready": idle, "throttled": 0, "unhealthy": self.workers - len(workers)},
        }

    def _purge(self) -> dict[str, Any]:
        with self._state:
            queued = [self._jobs[job_id] for job_id in self._queue if self._jobs[job_id].status == "IN_QUEUE"]
            for job in queued:
                job.finish("CANCELLED")
            self._queue.clear()
            self._state.notify_all()
        return {"removed": len(queued), "status": "completed"}


def _request_handler(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        server_version = "RunPodEmulator/1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def _answer(self, method: str) -> None:
            raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                status, payload = emulator.handle(method, self.path, self.headers.get("Authorization"), raw_body)
            except Exception as error:  # noqa: BLE001 - a bug here must answer, not hang the client
                logger.exception("emulator: %s %s failed", method, self.path)
                status, payload = 500, {"error": f"emulator error: {error}"}
            content = json.dumps(payload, allow_nan=True).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            logger.debug("%s " + format, self.address_string(), *args)

    return RequestHandler


# -- the worker process -------------------------------------------------------------------------
class _WorkerLoop:
    """One emulated RunPod worker: runs the handler's jobs on one event loop, as RunPod's does."""

    def __init__(self, config: dict[str, Any], cancel: Callable[[str], None], protocol: IO[str],
                 cold_start: float) -> None:
        self.config, self.cancel, self.protocol, self.cold_start = config, cancel, protocol, cold_start
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.warm = False

    def write(self, event: dict[str, Any]) -> None:  # only from the loop's thread
        self.protocol.write(json.dumps(event, allow_nan=True) + "\n")

    async def run(self) -> None:
        loop, lines = asyncio.get_running_loop(), asyncio.Queue[str | None]()

        def read() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=read, daemon=True).start()
        self.cold = asyncio.Lock()
        concurrency = self.config.get("concurrency_modifier", lambda current: current)(1)
        aggregate = bool(self.config.get("return_aggregate_stream"))
        self.write({"event": "ready", "pid": os.getpid(), "concurrency": concurrency, "aggregate": aggregate})
        while (line := await lines.get()) is not None:
            command = json.loads(line)
            if command["op"] == "job":
                self.tasks[command["job"]["id"]] = asyncio.create_task(self.run_job(command["job"]))
            elif command["op"] == "cancel" and command["id"] in self.tasks:
                self.cancel(command["id"])
                self.tasks[command["id"]].cancel()
        for task in list(self.tasks.values()):  # the emulator is stopping
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def run_job(self, job: dict[str, Any]) -> None:
        error = None
        try:
            async with self.cold:
                if not self.warm:
                    await asyncio.sleep(self.cold_start)
                    self.warm = True
            self.write({"event": "started", "id": job["id"]})
            error = await self.drive(job)
        except asyncio.CancelledError:
            pass  # cancelled or timed out: the handler has stopped its trial
        except Exception as exception:  # noqa: BLE001 - as RunPod reports a handler's exception
            error = f"handler: {exception} \ntraceback: {traceback.format_exc()}"
        finally:
            self.tasks.pop(job["id"], None)
            self.write({"event": "done", "id": job["id"], "error": error})

    async def drive(self, job: dict[str, Any]) -> str | None:
        output = self.config["handler"](job)
        if inspect.isawaitable(output):
            output = await output
        if not inspect.isasyncgen(output):
            items = output if inspect.isgenerator(output) else [output]
            for item in items:
                if isinstance(item, dict) and item.get("error"):
                    return str(item["error"])
                self.write({"event": "item", "id": job["id"], "output": item})
            return None
        try:
            async for item in output:
                if isinstance(item, dict) and item.get("error"):
                    return str(item["error"])
                self.write({"event": "item", "id": job["id"], "output": item})
        finally:
            await output.aclose()
        return None


def _serve_worker(cold_start: float) -> int:
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # a print or TensorFlow's chatter must never corrupt the protocol
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the emulator ends its workers by closing stdin
    from runpod_service.handler import cancel, serverless_config

    asyncio.run(_WorkerLoop(serverless_config(), cancel, protocol, cold_start).run())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runpod_service.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (K)")
    parser.add_argument("--cold-start", type=float, default=0.0, help="seconds before a worker's first job")
    parser.add_argument("--fail-first", type=int, default=0, help="the first N /run calls answer --fail-status")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="then each /run call does with this probability")
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--fail-jobs", type=int, default=0, help="the first N jobs end FAILED unrun")
    parser.add_argument("--endpoint", default="local", help="the endpoint id served")
    parser.add_argument("--api-key", default=os.environ.get("RUNPOD_EMULATOR_API_KEY"),
                        help="the key clients must send (default: none checked)")
    parser.add_argument("--execution-timeout", type=float, default=None, help="seconds before a job is TIMED_OUT")
    parser.add_argument("--serve-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_worker:
        return _serve_worker(args.cold_start)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    failures = Failures(first_runs=args.fail_first, rate=args.fail_rate, status=args.fail_status,
                        job_errors=args.fail_jobs)
    emulator = Emulator(args.workers, cold_start=args.cold_start, failures=failures, endpoint=args.endpoint,
                        api_key=args.api_key, host=args.host, port=args.port, execution_timeout=args.execution_timeout)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with emulator:
        print(f"RunPod emulator: endpoint {emulator.endpoint!r} with {args.workers} worker(s) at {emulator.url}\n"
              f"  runpod.endpoint_url_base = {emulator.url!r}; runpod.api_key = {args.api_key or 'any'!r}; "
              f"runpod.Endpoint({emulator.endpoint!r})", flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
