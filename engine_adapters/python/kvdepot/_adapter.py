"""What the engine adapters (kvdepot.vllm, kvdepot.sglang) share: the store
their extra config names, reconnected while it cannot be reached, and the
namespace fields both read the same way."""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Any

import torch

import kvdepot

logger = logging.getLogger(__name__)

# After a failed connect, the next attempt waits this long.
RECONNECT_S = 5.0

DTYPES = {
    torch.bfloat16: kvdepot.DType.bf16,
    torch.float16: kvdepot.DType.f16,
    torch.float32: kvdepot.DType.f32,
}


class StoreHandle:
    """The store named by an adapter's extra config:

      address       host:port of one kvdepot-node, or
      cluster, etcd a cluster name and its etcd endpoints ("h:p,h:p"), with
      replicas      its replication factor (default 1)
      token         the data token (default: $KVDEPOT_TOKEN)
      timeout_s     per-call timeout (default 10)
      ucx_tls       UCX transports (default: UCX's choice)

    get() connects on first use and returns None while the store cannot be
    reached (the engine then computes; the next attempt comes RECONNECT_S
    later), counting each failure as stats["store_unavailable"].
    Thread-safe."""

    def __init__(self, extra: dict[str, Any], stats: collections.Counter):
        if "address" not in extra and not {"cluster", "etcd"} <= extra.keys():
            raise ValueError("kvdepot: the extra config needs 'address', or "
                             "'cluster' and 'etcd'")
        self._extra = extra
        self._stats = stats
        self._lock = threading.Lock()
        self._store: kvdepot.Store | None = None
        self._next_attempt = 0.0

    def get(self) -> kvdepot.Store | None:
        with self._lock:
            if self._store is not None or time.monotonic() < self._next_attempt:
                return self._store
            e = self._extra
            token = str(e.get("token") or os.environ.get("KVDEPOT_TOKEN", ""))
            timeout = float(e.get("timeout_s", 10.0))
            tls = str(e.get("ucx_tls", ""))
            try:
                if "cluster" in e:
                    self._store = kvdepot.Store.connect_cluster(
                        str(e["cluster"]), str(e["etcd"]).split(","),
                        replicas=int(e.get("replicas", 1)), token=token,
                        timeout_s=timeout, ucx_tls=tls)
                else:
                    self._store = kvdepot.Store.connect(
                        str(e["address"]), token=token, timeout_s=timeout,
                        ucx_tls=tls)
            except ConnectionError as err:
                self._stats["store_unavailable"] += 1
                self._next_attempt = time.monotonic() + RECONNECT_S
                logger.warning("kvdepot: store unreachable, computing "
                               "instead: %s", err)
            return self._store

    def drop(self) -> None:
        with self._lock:
            self._store = None


def rope_theta(hf_config: Any) -> float:
    """RoPE theta of a transformers config (0 when it has none)."""
    rope = getattr(hf_config, "rope_theta", None) or (
        getattr(hf_config, "rope_parameters", None) or {}).get("rope_theta", 0)
    return float(rope or 0)
