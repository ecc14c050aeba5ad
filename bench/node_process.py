"""A standalone kvdepot-node on loopback for the Python benchmarks
(bench/vllm_ttft.py, bench/quality/clusterkv.py)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def config(token: str, capacity: str = "1GiB") -> str:
    return f"""\
node:
  admin_token: {token}-admin
  shutdown_grace: 1s
auth:
  token: {token}
host:
  capacity: {capacity}
  huge_pages: false
transfer:
  ucx_tls: tcp
metrics:
  listen: ""
"""


@contextmanager
def running_node(binary: str, workdir: Path, token: str,
                 capacity: str = "1GiB") -> Iterator[str]:
    """Starts the node (UCX tcp, data token `token`), yields its address,
    and stops it. RuntimeError with its log when it does not start."""
    (workdir / "node.yaml").write_text(config(token, capacity))
    port = workdir / "port"
    log = open(workdir / "node.log", "wb")
    proc = subprocess.Popen(
        [binary, "--standalone", "--config", str(workdir / "node.yaml"),
         "--listen", "127.0.0.1:0", "--port-file", str(port)],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (port.exists() and port.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kvdepot-node did not start:\n" +
                                   (workdir / "node.log").read_text())
            time.sleep(0.02)
        yield f"127.0.0.1:{port.read_text().strip()}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
