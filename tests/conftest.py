"""Shared fixtures: a real Cloud Storage emulator on a free local port."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a pipeline in a subprocess or another runner mode (skip them "
                   "with ./run_tests.sh -m 'not slow')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator():
    """Starts ``gcp-storage-emulator`` (in memory) on 127.0.0.1 and points every client
    at it through STORAGE_EMULATOR_HOST, the one variable the project reads.

    Yields:
      the emulator's URL. Each test makes its own bucket.
    """
    exe = shutil.which("gcp-storage-emulator",
                       path=os.path.dirname(sys.executable) + os.pathsep +
                       os.environ.get("PATH", ""))
    assert exe, "gcp-storage-emulator is not installed (pip install -e .[test])"
    port = _free_port()
    proc = subprocess.Popen([exe, "start", "--host", "127.0.0.1", "--port", str(port),
                             "--in-memory"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the storage emulator did not start on port {port}")
            time.sleep(0.1)
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST",
                                            "GOOGLE_APPLICATION_CREDENTIALS")}
    os.environ["STORAGE_EMULATOR_HOST"] = url
    os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    try:
        yield url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def bucket(gcs_emulator, request):
    """A fresh, empty bucket on the emulator; yields its name."""
    from transforms.io import storage

    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50]
    name = name.strip("-")
    storage.client().create_bucket(name)
    yield name
