"""Worker and beat logs are redacted like the web's: real processes, their real output."""
import io
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.portal.jobs.canaries import CANARIES, SECRET_PARTS

ROOT = Path(__file__).resolve().parents[3]


class ProcessOutput:
    """A process whose merged stdout/stderr is collected line by line as it runs."""

    def __init__(self, args: list[str], env: dict):
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 90.0) -> str:
        """Block until a line containing text is printed; fail if the process ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not printed; output:\n{self.text}")

    def stop(self) -> str:
        """Stop the process (SIGTERM, then SIGKILL) and return everything it printed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        while True:
            try:
                line = self._queue.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        return self.text

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _env(tmp_path: Path, **extra) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings.test",
           "PORTAL_VAR_DIR": str(tmp_path), "PORTAL_LOG_LEVEL": "INFO", **extra}
    env.pop("DATABASE_OWNER_URL", None)
    return env


def _assert_redacted(output: str) -> None:
    for secret in SECRET_PARTS:
        assert secret not in output, f"{secret!r} reached the log:\n{output}"
    assert "[redacted]" in output


def test_worker_logs_are_redacted(tmp_path, settings):
    from portal.celery import app

    queue_name = f"canary-{uuid.uuid4().hex[:12]}"
    worker = ProcessOutput([sys.executable, "-m", "celery", "-A", "portal", "worker",
                            "--pool", "solo", "--queues", queue_name, "--loglevel", "INFO",
                            "--without-heartbeat", "--without-gossip", "--without-mingle",
                            "--hostname", f"{queue_name}@%h"], _env(tmp_path))
    try:
        worker.wait_for("ready.")
        # A message for a task the worker does not know: Celery logs the whole message body
        # (its arguments) at ERROR. Backups and restores will carry SAS URLs like these.
        app.send_task("tests.canary.never_registered", args=list(CANARIES), queue=queue_name)
        line = worker.wait_for("Received unregistered task")
        worker.wait_for("canary")  # the body's line, wherever Celery splits it
    finally:
        output = worker.stop()
    _assert_redacted(output)
    assert "client_secret=[redacted]" in output and "sig=[redacted]" in output
    assert line.split()[2] == "ERROR"  # the portal's format, not Celery's "[...: ERROR/...]"


def test_beat_logs_are_redacted(tmp_path):
    beat = ProcessOutput([sys.executable, "-m", "celery", "-A", "portal", "beat",
                          "--schedule", str(tmp_path / "beat-schedule"), "--loglevel", "DEBUG"],
                         _env(tmp_path, PORTAL_LOG_LEVEL="DEBUG",
                              DJANGO_SETTINGS_MODULE="tests.portal.jobs.canary_beat_settings"))
    try:
        beat.wait_for("beat: Starting")
        beat.wait_for("tests.canary.never_registered")  # the schedule listing, with its args
    finally:
        output = beat.stop()
    _assert_redacted(output)
    assert "client_secret=[redacted]" in output


@pytest.mark.django_db
def test_task_loggers_redact_and_name_the_task():
    from celery import shared_task
    from celery.utils.log import get_task_logger

    logger = get_task_logger("tests.canary")

    @shared_task(name="tests.canary.logs_its_argument")
    def logs_its_argument(text: str) -> None:
        logger.warning("got %s", text)

    handler = logging.getLogger("celery.task").handlers[0]  # settings.LOGGING's task_console
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        logs_its_argument.apply(args=[CANARIES[0]], task_id="task-id-canary")
    finally:
        handler.setStream(previous)
    output = stream.getvalue()
    assert "tests.canary.logs_its_argument[task-id-canary] got client_secret=[redacted]" in output
    _assert_redacted(output)
