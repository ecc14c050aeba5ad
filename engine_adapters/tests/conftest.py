"""Fixtures: a real kvdepot-node (standalone, UCX over tcp) on loopback.

KVD_NODE_BIN names the binary (deploy/test.sh sets it to the release build).
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

TOKEN = "engine-adapters-test-token"

NODE_CONFIG = """\
node:
  admin_token: engine-adapters-test-admin
  shutdown_grace: 1s
auth:
  token: engine-adapters-test-token
host:
  capacity: 64MiB
  huge_pages: false
transfer:
  ucx_tls: tcp
metrics:
  listen: ""
"""


@pytest.fixture()
def node(tmp_path: Path):
    binary = os.environ.get("KVD_NODE_BIN")
    if not binary or not Path(binary).is_file():
        pytest.fail(f"KVD_NODE_BIN={binary!r} is not the kvdepot-node binary")
    config = tmp_path / "node.yaml"
    config.write_text(NODE_CONFIG)
    port_file = tmp_path / "port"
    log = open(tmp_path / "node.log", "wb")
    proc = subprocess.Popen(
        [binary, "--standalone", "--config", str(config), "--listen",
         "127.0.0.1:0", "--port-file", str(port_file)],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("kvdepot-node did not start:\n" +
                        (tmp_path / "node.log").read_text())
        time.sleep(0.02)
    yield f"127.0.0.1:{port_file.read_text().strip()}"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    finally:
        proc.kill()
        log.close()
