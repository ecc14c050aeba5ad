"""kvdepot as a vLLM V1 KV connector.

    --kv-transfer-config '{"kv_connector": "KVDepotConnector",
                           "kv_connector_module_path": "kvdepot.vllm",
                           "kv_role": "kv_both",
                           "kv_load_failure_policy": "recompute",
                           "kv_connector_extra_config": {"address": "10.0.0.5:7400"}}'

kv_load_failure_policy "recompute" makes vLLM compute the blocks of a chunk
that could not be loaded; with vLLM's default ("fail") such a request ends
with an error instead (the connector warns at start).

Extra config (kv_connector_extra_config): the store (address, or cluster
and etcd; token, timeout_s, ucx_tls: kvdepot._adapter.StoreHandle), and
  chunk_tokens     tokens per chunk (default 256; a multiple of the block
                   size)
  tenant_salt      keeps one tenant's chunks from another (default none)
  layers_per_fetch layers a load fetches at a time (default 4)
  load_staging_mib host memory for the chunks of one step's loads
                   (default 256; a larger step loads in several rounds, and
                   layers overlap the forward only in the last)

Roles: kv_producer saves what it computes, kv_consumer loads what the store
has, kv_both does both (prefix sharing between instances).

Chunk keys come from the prompt's token ids and the model's namespace
(DESIGN.md 3.1: model, dtype, geometry, chunk size, salt), never from vLLM's
block hashes, so any engine serving the same namespace finds them.

Scheduler side: a waiting request's prompt is cut into chunks; the store is
asked how many leading chunks it holds (one Lookup) and those beyond vLLM's
own prefix-cache hit are announced as external tokens, always leaving the
last prompt token to compute. Saves are planned once a chunk's tokens are
computed. Worker side: loads are layer-wise. start_load_kv starts the
step's loads on a thread of the C++ PagedChunkIO, which fetches a few layers
of every chunk at a time, verifies them against the chunk's checksums and
scatters them into the paged cache; wait_for_layer_load(layer) blocks the
forward only until that layer is in, so layer i computes while later layers
travel. A chunk that cannot be loaded (node down, missing, corrupt) reports
its blocks through get_block_ids_with_load_errors once the load has ended
(wait_for_save), and vLLM recomputes them.

Saves are asynchronous: wait_for_save hands the step's chunks to one saver
thread and returns, so the engine goes on computing (and answering) while
they travel. The saver reads the blocks in place, so they must not change
until it is done: a request with saves in flight keeps its blocks when it
finishes (request_finished returns True) until get_finished reports it, and
a step that preempts requests first waits for every save in flight
(handle_preemptions). At most _MAX_SAVING_CHUNKS chunks are in flight; past
that wait_for_save waits for the oldest batch, which needs nothing from the
engine, so chunked prefill cannot deadlock on it.

The paged cache's geometry is read from the registered tensors (shape,
strides, dtype), never assumed: vLLM's per-layer view is logically
[blocks, kv_heads, block_size, 2 * head_size], K in the first half of the
last dimension.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
    SupportsHMA,
)

import kvdepot
from kvdepot._adapter import DTYPES, StoreHandle, rope_theta

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.forward_context import ForwardContext
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.request import Request

logger = logging.getLogger(__name__)

# Counters of every connector in this process (scheduler and worker sides):
# lookups, hit_chunks, loaded_chunks, load_failures, saved_chunks,
# save_failures, store_unavailable; and chunk_object_bytes, the size of one
# chunk object of the namespace.
_STATS: collections.Counter = collections.Counter()

# Chunks being saved at most; wait_for_save waits beyond it.
_MAX_SAVING_CHUNKS = 64

@dataclass
class ChunkOp:
    """One chunk to move: its request, key, parent's key and blocks."""

    req_id: str
    key: bytes
    parent: bytes
    block_ids: list[int]

    def as_tuple(self) -> tuple[bytes, bytes, list[int], int]:
        return (self.key, self.parent, self.block_ids, 0)


@dataclass
class KVDepotConnectorMetadata(KVConnectorMetadata):
    loads: list[ChunkOp] = field(default_factory=list)
    saves: list[ChunkOp] = field(default_factory=list)
    preempted: set[str] = field(default_factory=set)


@dataclass
class _Tracked:
    """Scheduler-side state of one request."""

    keys: list[bytes]  # keys of the prompt's full chunks
    block_ids: list[int] = field(default_factory=list)
    computed: int = 0  # tokens computed once the scheduled step has run
    saved: int = 0  # chunks saved or already in the store
    sent: bool = False  # some of its chunks were handed to the worker to save
    load: list[ChunkOp] | None = None  # planned in update_state_after_alloc


def model_spec(vllm_config: "VllmConfig", chunk_tokens: int,
               tenant_salt: str = "") -> kvdepot.ModelSpec:
    """The kvdepot namespace of the model vLLM serves."""
    model = vllm_config.model_config
    parallel = vllm_config.parallel_config
    spec = kvdepot.ModelSpec()
    spec.model_id = model.model
    spec.revision = model.revision or ""
    dtype = vllm_config.cache_config.cache_dtype
    torch_dtype = model.dtype if dtype == "auto" else getattr(torch, dtype, None)
    if torch_dtype not in DTYPES:
        raise ValueError(f"kvdepot: KV cache dtype {dtype} ({torch_dtype}) is "
                         "not supported (bf16, f16, f32)")
    spec.dtype = DTYPES[torch_dtype]
    spec.num_layers = model.get_num_layers(parallel)
    # The namespace holds every head; a TP rank's cache holds a slice.
    spec.kv_heads = model.get_total_num_kv_heads()
    spec.head_dim = model.get_head_size()
    spec.rope_theta = rope_theta(model.hf_config)
    spec.chunk_tokens = chunk_tokens
    spec.tenant_salt = tenant_salt
    spec.validate()
    return spec


def _layer_index(name: str) -> int:
    found = re.findall(r"\d+", name)
    if not found:
        raise ValueError(f"kvdepot: cannot order KV cache layer {name!r}")
    return int(found[0])


class KVDepotConnector(KVConnectorBase_V1, SupportsHMA):

    def __init__(self, vllm_config: "VllmConfig", role: KVConnectorRole,
                 kv_cache_config: Any = None):
        super().__init__(vllm_config, role, kv_cache_config)
        transfer = vllm_config.kv_transfer_config
        extra = dict(transfer.kv_connector_extra_config or {})
        self._store = StoreHandle(extra, _STATS)
        self._produce = transfer.is_kv_producer
        self._consume = transfer.is_kv_consumer
        groups = getattr(kv_cache_config, "kv_cache_groups", None) or []
        if len(groups) > 1:
            raise ValueError(
                f"kvdepot: {len(groups)} KV cache groups (a hybrid model); the "
                "connector handles one full-attention group so far: run vLLM "
                "with --disable-hybrid-kv-cache-manager")
        if getattr(transfer, "kv_load_failure_policy", "recompute") != "recompute":
            logger.warning(
                "kvdepot: kv_load_failure_policy=%r: a chunk that cannot be "
                "loaded fails its request; set it to 'recompute' to compute "
                "the chunk instead", transfer.kv_load_failure_policy)
        self._block_size = vllm_config.cache_config.block_size
        chunk_tokens = int(extra.get("chunk_tokens", 256))
        if chunk_tokens <= 0 or chunk_tokens % self._block_size:
            raise ValueError(
                f"kvdepot: chunk_tokens={chunk_tokens} must be a positive "
                f"multiple of the block size {self._block_size}")
        self._spec = model_spec(vllm_config, chunk_tokens,
                                str(extra.get("tenant_salt", "")))
        self._chunk = chunk_tokens
        self._layers_per_fetch = _positive(extra, "layers_per_fetch", 4)
        self._load_staging = _positive(extra, "load_staging_mib", 256) << 20
        # Scheduler side.
        self._requests: dict[str, _Tracked] = {}
        self._hit_end: dict[str, int] = {}  # store prefix end, per request
        self._planned_loads: list[ChunkOp] = []
        # Worker side.
        self._layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._layer_index: dict[str, int] = {}
        self._kv: dict[bool, kvdepot.PagedKV] = {}  # per direction (load?)
        self._loading: tuple[kvdepot.LayerLoad, list[ChunkOp]] | None = None
        self._load_errors: set[int] = set()
        self._saver = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kvdepot-save",
            initializer=_yield_to_the_engine)
        self._in_flight: collections.deque[
            tuple[concurrent.futures.Future, list[ChunkOp]]] = collections.deque()
        self._saving: dict[str, int] = {}  # req_id -> its chunks in flight
        self._finishing: set[str] = set()  # finished, waiting for saves

    @staticmethod
    def process_stats() -> dict[str, int]:
        """The counters of every kvdepot connector in this process."""
        return dict(_STATS)

    # -- scheduler side ----------------------------------------------------

    def _prompt_keys(self, request: "Request") -> list[bytes]:
        return kvdepot.chunk_keys(self._spec, list(request.prompt_token_ids or []))

    def get_num_new_matched_tokens(self, request: "Request",
                                   num_computed_tokens: int) -> tuple[int | None, bool]:
        if not self._consume or num_computed_tokens % self._chunk:
            return 0, False
        # Only chunks that leave the last prompt token to compute.
        usable = (request.num_tokens - 1) // self._chunk
        keys = self._prompt_keys(request)[:usable]
        if len(keys) * self._chunk <= num_computed_tokens:
            return 0, False
        store = self._store.get()
        if store is None:
            return 0, False
        try:
            cached = store.lookup(keys)
        except (ConnectionError, RuntimeError) as e:  # the store is a cache
            logger.warning("kvdepot: lookup failed, computing instead: %s", e)
            return 0, False
        _STATS["lookups"] += 1
        # A memo, not state: a repeated call overwrites it with its answer.
        self._hit_end[request.request_id] = cached * self._chunk
        ext = cached * self._chunk - num_computed_tokens
        return (ext, False) if ext > 0 else (0, False)

    def update_state_after_alloc(self, request: "Request",
                                 blocks: "KVCacheBlocks",
                                 num_external_tokens: int) -> None:
        tracked = self._track(request)
        tracked.block_ids = list(blocks.get_block_ids()[0])
        end = self._hit_end.pop(request.request_id, 0)
        if num_external_tokens <= 0:
            return
        # The external tokens end where the store's prefix ends and start
        # where vLLM's own (chunk-aligned) prefix-cache hit ends.
        first = (end - num_external_tokens) // self._chunk
        last = end // self._chunk
        ops = [self._op(request.request_id, tracked, c)
               for c in range(first, last)]
        self._planned_loads.extend(ops)
        tracked.saved = max(tracked.saved, last)  # already in the store
        _STATS["hit_chunks"] += len(ops)

    def _track(self, request: "Request") -> _Tracked:
        tracked = self._requests.get(request.request_id)
        if tracked is None:
            tracked = _Tracked(keys=self._prompt_keys(request))
            self._requests[request.request_id] = tracked
        return tracked

    def _op(self, req_id: str, tracked: _Tracked, chunk: int) -> ChunkOp:
        per = self._chunk // self._block_size
        return ChunkOp(req_id=req_id, key=tracked.keys[chunk],
                       parent=tracked.keys[chunk - 1] if chunk else b"",
                       block_ids=tracked.block_ids[chunk * per:(chunk + 1) * per])

    def build_connector_meta(self, scheduler_output: "SchedulerOutput") -> KVConnectorMetadata:
        meta = KVDepotConnectorMetadata(
            loads=self._planned_loads,
            preempted=set(scheduler_output.preempted_req_ids or ()))
        self._planned_loads = []
        steps = scheduler_output.num_scheduled_tokens
        for new in scheduler_output.scheduled_new_reqs:
            tracked = self._requests.get(new.req_id)
            if tracked is not None:
                tracked.block_ids = list(new.block_ids[0])
                tracked.computed = new.num_computed_tokens + steps.get(new.req_id, 0)
        cached = scheduler_output.scheduled_cached_reqs
        for i, req_id in enumerate(cached.req_ids):
            tracked = self._requests.get(req_id)
            if tracked is None:
                continue
            new_blocks = cached.new_block_ids[i]
            if new_blocks is not None:
                if req_id in cached.resumed_req_ids:
                    tracked.block_ids = list(new_blocks[0])
                else:
                    tracked.block_ids.extend(new_blocks[0])
            tracked.computed = cached.num_computed_tokens[i] + steps.get(req_id, 0)
        if self._produce:
            for req_id, tracked in self._requests.items():
                done = min(tracked.computed // self._chunk, len(tracked.keys))
                if done > tracked.saved:
                    meta.saves.extend(self._op(req_id, tracked, c)
                                      for c in range(tracked.saved, done))
                    tracked.saved = done
                    tracked.sent = True
        return meta

    def request_finished(self, request: "Request",
                         block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        return self.request_finished_all_groups(request, (block_ids,))

    def request_finished_all_groups(
            self, request: "Request",
            block_ids: tuple[list[int], ...]) -> tuple[bool, dict[str, Any] | None]:
        tracked = self._requests.pop(request.request_id, None)
        self._hit_end.pop(request.request_id, None)
        # Blocks with saves in flight are freed once get_finished says so.
        return tracked is not None and tracked.sent, None

    @classmethod
    def get_required_kvcache_layout(cls, vllm_config: "VllmConfig") -> str | None:
        return None  # any: the geometry is read from the tensors

    # -- worker side -------------------------------------------------------

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        names = sorted(kv_caches, key=_layer_index)
        if len(names) != self._spec.num_layers:
            raise ValueError(f"kvdepot: {len(names)} KV cache layers for a "
                             f"model of {self._spec.num_layers}")
        self._layers = [self._split(name, kv_caches[name]) for name in names]
        self._layer_index = {name: i for i, name in enumerate(names)}
        self._paged(load=True)

    def _split(self, name: str, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of one layer as [blocks, heads, block_size, head_dim] views.

        vLLM's CPU attention keeps a layer as [blocks, heads, block_size,
        2 * head_dim] and splits each (block, head) slab in two halves: K,
        which its 'vec' kernels store transposed ([head_dim][block_size]),
        then V ([block_size][head_dim])."""
        d, n = self._spec.head_dim, self._block_size
        if t.device.type != "cpu":
            raise ValueError(f"kvdepot: layer {name} is on {t.device}; only "
                             "host KV caches are supported so far")
        if t.dim() != 4 or t.shape[2] != n or t.shape[3] != 2 * d or \
                t.stride(2) != 2 * d or t.stride(3) != 1:
            raise ValueError(
                f"kvdepot: layer {name} is {tuple(t.shape)} with strides "
                f"{t.stride()}; expected [blocks, kv_heads, {n}, {2 * d}] "
                "with each (block, head) slab contiguous")
        isa = _cpu_attention_isa(self._vllm_config, n, d)
        if isa != "vec":
            raise ValueError(f"kvdepot: vLLM's CPU attention ISA '{isa}' lays "
                             "keys out in a way kvdepot does not read yet "
                             "(supported: vec)")
        shape = (t.shape[0], t.shape[1], n, d)
        k = t.as_strided(shape, (t.stride(0), t.stride(1), 1, n),
                         t.storage_offset())
        v = t.as_strided(shape, (t.stride(0), t.stride(1), d, 1),
                         t.storage_offset() + n * d)
        return k, v

    def _paged(self, load: bool) -> kvdepot.PagedKV | None:
        """The paged-cache I/O for loads or for saves (each has its own
        staging, so the saver thread and the engine thread never share one),
        once the store is reachable."""
        if load not in self._kv and self._layers:
            store = self._store.get()
            if store is not None:
                self._kv[load] = kvdepot.PagedKV(
                    store, self._spec, self._layers, dims="NHTD",
                    # At least one chunk object (its header is well under
                    # 1 MiB).
                    staging_bytes=max(self._load_staging if load else 64 << 20,
                                      self._spec.chunk_payload_bytes + (1 << 20)))
                _STATS["chunk_object_bytes"] = self._kv[load].object_bytes
        return self._kv.get(load)

    def _meta(self) -> KVDepotConnectorMetadata:
        meta = self._get_connector_metadata()
        assert isinstance(meta, KVDepotConnectorMetadata), type(meta)
        return meta

    def start_load_kv(self, forward_context: "ForwardContext", **kwargs: Any) -> None:
        self._finish_load()  # a step that ended without wait_for_save
        loads = self._meta().loads
        if not loads:
            return
        kv = self._paged(load=True)
        if kv is None:  # the store is unreachable: vLLM computes them
            self._end_load(loads, [None] * len(loads))
            return
        chunks = [op.as_tuple() for op in loads]
        self._loading = (kv.load_layers(chunks, self._layers_per_fetch), loads)

    def wait_for_layer_load(self, layer_name: str) -> None:
        if self._loading is not None:
            # A layer the cache did not register waits for every layer.
            last = len(self._layers) - 1
            self._loading[0].wait_layer(self._layer_index.get(layer_name, last))

    def _finish_load(self) -> None:
        """Waits for the step's load to end and notes its failed chunks."""
        if self._loading is not None:
            load, loads = self._loading
            self._loading = None
            self._end_load(loads, load.wait())

    def _end_load(self, loads: list[ChunkOp], results: list) -> None:
        for op in _tally(loads, results, "loaded_chunks", "load_failures",
                         "not loaded, recomputing"):
            self._load_errors.update(op.block_ids)  # vLLM recomputes them

    def save_kv_layer(self, layer_name: str, kv_layer: torch.Tensor,
                      attn_metadata: Any, **kwargs: Any) -> None:
        return  # saves run once the forward has written every layer

    def wait_for_save(self) -> None:
        self._finish_load()
        saves = self._meta().saves
        for op in saves:  # get_finished reports each of these requests
            self._saving.setdefault(op.req_id, 0)
        kv = self._paged(load=False) if saves else None
        if kv is None:  # nothing to save, or the store is unreachable
            _tally(saves, [None] * len(saves), "saved_chunks", "save_failures",
                   "not saved")
        else:
            chunks = [op.as_tuple() for op in saves]
            self._in_flight.append((self._saver.submit(kv.save, chunks), saves))
            for op in saves:
                self._saving[op.req_id] += 1
        self._reap(wait=False)
        while sum(len(ops) for _, ops in self._in_flight) > _MAX_SAVING_CHUNKS:
            self._reap_oldest()

    def handle_preemptions(self, kv_connector_metadata: KVConnectorMetadata) -> None:
        # A preempted request's blocks are reused by this step: saves still
        # reading them must end first.
        assert isinstance(kv_connector_metadata, KVDepotConnectorMetadata)
        if kv_connector_metadata.preempted:
            self._reap(wait=True)

    def get_finished(self, finished_req_ids: set[str]) -> tuple[set[str] | None, None]:
        self._reap(wait=False)
        self._finishing.update(r for r in finished_req_ids if r in self._saving)
        done = {r for r in self._finishing if self._saving[r] == 0}
        for req_id in done:
            del self._saving[req_id]
        self._finishing -= done
        return done or None, None

    def _reap(self, wait: bool) -> None:
        """Counts the saves that ended (every one in flight when `wait`)."""
        while self._in_flight and (wait or self._in_flight[0][0].done()):
            self._reap_oldest()

    def _reap_oldest(self) -> None:
        future, ops = self._in_flight.popleft()
        try:
            results = future.result()
        except Exception as e:  # a failed save loses a cache entry, no more
            logger.warning("kvdepot: saving %d chunks failed: %s", len(ops), e)
            results = [None] * len(ops)
        _tally(ops, results, "saved_chunks", "save_failures", "not saved")
        for op in ops:
            self._saving[op.req_id] -= 1

    def shutdown(self) -> None:
        self._finish_load()
        self._reap(wait=True)
        self._saver.shutdown(wait=True)

    def get_block_ids_with_load_errors(self) -> set[int]:
        self._finish_load()
        errors, self._load_errors = self._load_errors, set()
        return errors


def _positive(extra: dict[str, Any], name: str, default: int) -> int:
    value = int(extra.get(name, default))
    if value <= 0:
        raise ValueError(f"kvdepot: {name}={value} must be positive")
    return value


def _yield_to_the_engine() -> None:
    """Lowers the calling (saver) thread's CPU priority: where the engine's
    forward runs on the same cores (vLLM's CPU backend, one OpenMP thread
    per core), a save competing at equal priority stalls every parallel
    region of the next step; at the lowest priority it takes the cores the
    engine leaves idle."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError as e:  # not fatal: saves still run, at normal priority
        logger.warning("kvdepot: cannot lower the saver's priority: %s", e)


def _tally(ops: list[ChunkOp], results: list, done: str, failed: str,
           what: str) -> list[ChunkOp]:
    """Counts the outcome of each op (a Status, or None when the store was
    unreachable) and logs failures; returns the failed ops."""
    bad = []
    for op, status in zip(ops, results):
        if status is not None and status.ok:
            _STATS[done] += 1
            continue
        _STATS[failed] += 1
        bad.append(op)
        logger.warning("kvdepot: chunk %s %s: %s", op.key.hex()[:16], what,
                       status or "store unreachable")
    return bad


def _cpu_attention_isa(vllm_config: "VllmConfig", block_size: int,
                       head_dim: int) -> str:
    """The ISA vLLM's CPU attention picks for this model: it decides how the
    kernels pack keys in the cache."""
    from vllm.v1.attention.backends import cpu_attn

    return cpu_attn._get_attn_isa(vllm_config.model_config.dtype, block_size,
                                  head_dim, vllm_config.cache_config.cache_dtype)
