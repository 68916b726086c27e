"""Helpers for the multi-process ROS tests: node subprocesses that never outlive a test, an
isolated DDS domain per test module, and an in-test probe node that records what it hears."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def isolated_domain() -> Iterator[int]:
    """A random ROS_DOMAIN_ID (100-230) with localhost discovery for this process and children."""
    domain = random.randint(100, 230)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(domain))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("PYTHONUNBUFFERED", "1")
        yield domain


class NodeProcess:
    """``python -m <module> --ros-args -p k:=v ...`` with its output in a log file."""

    def __init__(self, module: str, params: dict | None = None, params_file: Path | None = None):
        args = [sys.executable, "-m", module, "--ros-args"]
        if params_file is not None:
            args += ["--params-file", str(params_file)]
        for key, value in (params or {}).items():
            args += ["-p", f"{key}:={value}"]
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            "w+", prefix=module.rsplit(".", 1)[-1] + "_", suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO,
                                     start_new_session=True)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_output(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.output():
                return True
            if not self.alive():
                return False
            time.sleep(0.1)
        return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop_timed(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> tuple[float, int]:
        """Send ``sig``; returns (seconds until the process exited, exit code), SIGKILL after
        ``timeout``."""
        start = time.monotonic()
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(5)
        seconds = time.monotonic() - start
        self.log.close()
        return seconds, self.proc.returncode

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (clean shutdown), then SIGKILL if it hangs; returns the exit code."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


class Probe:
    """An in-test rclpy node spun on a background thread; records messages per topic."""

    def __init__(self, name: str = "probe"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name)
        self.received: dict[str, list] = {}
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def listen(self, msg_type, topic: str, qos) -> list:
        store = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, store.append, qos)
        return store

    def publisher(self, msg_type, topic: str, qos):
        return self.node.create_publisher(msg_type, topic, qos)

    def publish_when_matched(self, publisher, msg, timeout: float = 20.0) -> None:
        """Publish once a reader has matched: a volatile reader (the policy's /instruction
        subscription) gets nothing a writer sent before the match, even a latched one."""
        assert self.wait_for(lambda: publisher.get_subscription_count() > 0, timeout), \
            f"no reader matched {publisher.topic_name} in {timeout:g} s"
        publisher.publish(msg)

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(poll)
        return predicate()

    def close(self) -> None:
        self._executor.shutdown()
        self._thread.join(timeout=2.0)
        self.node.destroy_node()
