"""kvdepot as an SGLang HiCache storage backend (the L3 tier).

    python -m sglang.launch_server --model-path M --page-size 64 \\
        --enable-hierarchical-cache --hicache-storage-backend dynamic \\
        --hicache-storage-backend-extra-config '{
            "backend_name": "kvdepot", "module_path": "kvdepot.sglang",
            "class_name": "KVDepotHiCacheStorage", "interface_v1": 1,
            "hicache_storage_pass_prefix_keys": true,
            "address": "10.0.0.5:7400"}'

Extra config (--hicache-storage-backend-extra-config):
  backend_name, module_path, class_name   SGLang's dynamic loader, as above
  interface_v1  1: SGLang calls batch_get_v1 / batch_set_v1, which move pages
                between its host pool and the store with no Python copy
  hicache_storage_pass_prefix_keys  true: SGLang passes the keys before each
                batch, so its first page is stored linked to its parent
  the store     address, or cluster and etcd; token, timeout_s, ucx_tls
                (kvdepot._adapter.StoreHandle)
  chunk_tokens  must equal --page-size (default: the page size)
  tenant_salt   keeps one tenant's chunks from another (default none)
  model_id      the namespace's model id (default: SGLang's served model name,
                i.e. --model-path; vLLM's connector uses --model)
  revision      weight revision (default: SGLang's --revision, or "")
  rope_theta    (default: from the model's config, as vLLM's connector reads it)

Keys. SGLang never gives a storage backend token ids: every call carries
page hashes (sglang.srt.mem_cache.utils.get_storage_hash_str), where page i's
hash is SHA-256(page i-1's hash || the page's token ids as u32 little-endian)
and page 0 chains from storage_namespace_seed(extra_key, cache_salt), which is
no prior at all for a plain prompt. That is DESIGN.md 3.1's chunk key with
another root. So when the host pool is registered this backend re-roots
SGLang's chains in this process: a plain prompt chains from the namespace
fingerprint, and with chunk_tokens equal to the page size SGLang's hash of
page i *is* kvdepot's key of chunk i, the key vLLM's connector computes from
the same tokens. A request with an extra_key (LoRA, ...) or a cache_salt
chains from SHA-256(fingerprint || SGLang's own seed): apart from plain
prompts and from other salts, shared only among SGLang instances. The root is
process-wide (KV-event block hashes follow it too); close() restores SGLang's.

Pages are chunks: PagedChunkIO gathers each page from the host pool (layouts
layer_first, page_first, page_first_direct, page_head, read from its tensor's
shape and strides) into the canonical layout, and scatters verified chunks
back. A store that cannot be reached is a miss: SGLang computes instead.

Not yet: tensor/pipeline/context parallelism (a rank holds a head or layer
slice), MLA, packed draft layers, hybrid pools (Mamba, SWA, indexer).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import sys
import threading
from typing import Any, Callable, Optional

import torch
from sglang.srt.mem_cache.hicache_storage import (
    HiCacheStorage,
    HiCacheStorageConfig,
    HiCacheStorageExtraInfo,
    PoolName,
)

import kvdepot
from kvdepot._adapter import DTYPES, StoreHandle, rope_theta

logger = logging.getLogger(__name__)

# Counters of every backend in this process: lookups, hit_pages,
# loaded_pages, load_failures, saved_pages, save_failures, store_unavailable.
_STATS: collections.Counter = collections.Counter()

# Pages per round of the copying calls (get, set, batch_get, batch_set).
_SCRATCH_PAGES = 8

# Per host-pool layout: the axes of one page after its K/V axis, in the order
# MHATokenToKVPoolHost.get_data_page lays them out (L layer, T token, H head,
# D head dim), and the dims PagedKV reads of one layer's [page, ...] view.
_LAYOUTS = {
    "layer_first": ("LTHD", "NTHD"),
    "page_first": ("TLHD", "NTHD"),
    "page_first_direct": ("LTHD", "NTHD"),
    "page_head": ("HTLD", "NHTD"),
}

# (key bytes, parent key bytes or b"", block ids, first block offset)
Chunk = tuple[bytes, bytes, list[int], int]


class KVDepotHiCacheStorage(HiCacheStorage):

    def __init__(self, storage_config: HiCacheStorageConfig,
                 kwargs: Optional[dict] = None):
        c = storage_config
        unsupported = {"tp_size": c.tp_size, "pp_size": c.pp_size,
                       "attn_cp_size": c.attn_cp_size, "dcp_size": c.dcp_size}
        if c.is_mla_model or any(v != 1 for v in unsupported.values()):
            raise NotImplementedError(
                f"kvdepot: {unsupported}, mla={c.is_mla_model}; the SGLang "
                "backend moves whole pages of every head and layer so far: "
                "one rank, MHA")
        self._config = c
        self._extra = dict(c.extra_config or {})
        self._store = StoreHandle(self._extra, _STATS)
        # A PagedKV serves one call at a time. SGLang loads (prefetch thread)
        # and saves (backup thread) at once, into and from distinct pages:
        # each direction has its own PagedKV over the host pool.
        self._locks = {d: threading.Lock() for d in ("load", "save", "copy")}
        self._spec: kvdepot.ModelSpec | None = None
        self._host: Any = None
        self._page = 0
        self._kv: dict[str, kvdepot.PagedKV] = {}  # over the host pool
        self._scratch: torch.Tensor | None = None  # for the copying calls
        self._scratch_kv: kvdepot.PagedKV | None = None
        self._restore_root: Callable[[], None] | None = None

    @staticmethod
    def process_stats() -> dict[str, int]:
        """The counters of every kvdepot backend in this process."""
        return dict(_STATS)

    @property
    def spec(self) -> kvdepot.ModelSpec:
        if self._spec is None:
            raise RuntimeError("kvdepot: no host pool registered yet")
        return self._spec

    # -- setup ---------------------------------------------------------------

    def register_mem_pool_host(self, mem_pool_host: Any) -> None:
        host = mem_pool_host
        if getattr(host, "kv_buffer", None) is None or \
                host.layout not in _LAYOUTS:
            raise NotImplementedError(
                f"kvdepot: host pool {type(host).__name__} (layout "
                f"{getattr(host, 'layout', None)!r}); supported: an MHA pool "
                f"laid out {sorted(_LAYOUTS)}")
        if getattr(host, "v_head_dim", host.head_dim) != host.head_dim or \
                getattr(host, "target_layer_num", host.layer_num) != host.layer_num:
            raise NotImplementedError(
                "kvdepot: K and V of different widths, or packed draft "
                "layers, are not supported")
        page = int(host.page_size)
        chunk = int(self._extra.get("chunk_tokens", page))
        if chunk != page:
            raise ValueError(
                f"kvdepot: chunk_tokens={chunk} but SGLang's page size is "
                f"{page}: they must be equal (run SGLang with --page-size "
                f"{chunk}) for SGLang's page hashes to be kvdepot's keys")
        if host.dtype not in DTYPES:
            raise ValueError(f"kvdepot: host pool dtype {host.dtype} is not "
                             "supported (bf16, f16, f32)")
        super().register_mem_pool_host(host)
        self._host, self._page = host, page
        self._spec = self._model_spec(host)
        self._restore_root = _root_chains_at(self._spec.fingerprint())

    def register_mem_host_pool_v2(self, host_pool: Any, host_pool_name: Any) -> None:
        if host_pool_name != PoolName.KV:
            raise NotImplementedError(
                f"kvdepot: host pool {host_pool_name}: hybrid models (Mamba, "
                "SWA, indexer or draft pools) are not supported yet")
        super().register_mem_host_pool_v2(host_pool, host_pool_name)

    def _model_spec(self, host: Any) -> kvdepot.ModelSpec:
        e = self._extra
        model_path, revision = _sglang_model()
        spec = kvdepot.ModelSpec()
        spec.model_id = str(e.get("model_id") or self._config.model_name or
                            model_path or "")
        spec.revision = str(e.get("revision", revision or ""))
        spec.dtype = DTYPES[host.dtype]
        spec.num_layers = int(host.layer_num)
        spec.kv_heads = int(host.head_num)
        spec.head_dim = int(host.head_dim)
        spec.rope_theta = float(e["rope_theta"]) if "rope_theta" in e else \
            _rope_theta(model_path or spec.model_id, spec.revision)
        spec.chunk_tokens = self._page
        spec.tenant_salt = str(e.get("tenant_salt", ""))
        spec.validate()
        return spec

    def close(self) -> None:
        if self._restore_root is not None:
            self._restore_root()
            self._restore_root = None
        self._kv, self._scratch_kv = {}, None  # a call in flight keeps its own
        self._store.drop()

    def _host_kv(self, direction: str) -> kvdepot.PagedKV | None:
        if direction not in self._kv:
            store = self._store.get()
            if store is None:
                return None
            self._kv[direction] = _paged_kv(store, self.spec, self._host.layout,
                                            _host_pages(self._host))
        return self._kv[direction]

    def _scratch_io(self) -> tuple[torch.Tensor, kvdepot.PagedKV] | None:
        """_SCRATCH_PAGES flat pages, as get_data_page gives them, and their
        PagedKV: the copying calls stage pages there."""
        if self._scratch_kv is None:
            store = self._store.get()
            if store is None:
                return None
            h = self._host
            axes, _ = _LAYOUTS[h.layout]
            size = {"L": h.layer_num, "T": self._page, "H": h.head_num,
                    "D": h.head_dim}
            self._scratch = torch.zeros(
                (_SCRATCH_PAGES, 2, *(size[a] for a in axes)), dtype=h.dtype)
            self._scratch_kv = _paged_kv(store, self.spec, h.layout,
                                         self._scratch.transpose(0, 1))
        assert self._scratch is not None
        return self._scratch, self._scratch_kv

    # -- keys ------------------------------------------------------------------

    @staticmethod
    def _chunks(keys: list[str], blocks: list[int],
                extra_info: Optional[HiCacheStorageExtraInfo]) -> list[Chunk]:
        """Keys of one call are consecutive pages of one sequence, as SGLang's
        controller passes them; the page before the first is the last of
        extra_info.prefix_keys when SGLang passes them."""
        prefix = extra_info.prefix_keys if extra_info is not None else None
        parent = bytes.fromhex(prefix[-1]) if prefix else b""
        chunks = []
        for key, block in zip(keys, blocks):
            raw = _key_bytes(key)
            chunks.append((raw, parent, [block], 0))
            parent = raw
        return chunks

    # -- the zero-copy interface (interface_v1) --------------------------------

    def batch_exists(self, keys: list[str],
                     extra_info: Optional[HiCacheStorageExtraInfo] = None) -> int:
        if not keys:
            return 0
        raw = [_key_bytes(k) for k in keys]
        store = self._store.get()
        if store is None:
            return 0
        try:
            held = store.lookup(raw)
        except (ConnectionError, RuntimeError) as e:  # the store is a cache
            logger.warning("kvdepot: lookup failed, computing instead: %s", e)
            return 0
        _STATS["lookups"] += 1
        _STATS["hit_pages"] += held
        return held

    def exists(self, key: str) -> bool:
        return self.batch_exists([key]) == 1

    def batch_get_v1(self, keys: list[str], host_indices: torch.Tensor,
                     extra_info: Optional[HiCacheStorageExtraInfo] = None) -> list[bool]:
        return self._host_io(keys, host_indices, extra_info, load=True)

    def batch_set_v1(self, keys: list[str], host_indices: torch.Tensor,
                     extra_info: Optional[HiCacheStorageExtraInfo] = None) -> list[bool]:
        return self._host_io(keys, host_indices, extra_info, load=False)

    def _host_io(self, keys: list[str], host_indices: torch.Tensor,
                 extra_info: Optional[HiCacheStorageExtraInfo],
                 load: bool) -> list[bool]:
        """Pages `keys` at host slots host_indices[i * page_size]."""
        if not keys:
            return []
        firsts = host_indices.reshape(-1)[::self._page][:len(keys)].tolist()
        if len(firsts) != len(keys) or any(s % self._page for s in firsts):
            raise ValueError(f"kvdepot: {len(keys)} pages need as many "
                             f"page-aligned runs of {self._page} host slots")
        chunks = self._chunks(keys, [s // self._page for s in firsts], extra_info)
        direction = "load" if load else "save"
        with self._locks[direction]:
            return _run(self._host_kv(direction), chunks, load)

    # -- the copying interface (deprecated in SGLang, kept for its default) ----

    def batch_get(self, keys: list[str], target_locations: Optional[Any] = None,
                  target_sizes: Optional[Any] = None) -> list[torch.Tensor | None]:
        """Flat pages (get_data_page's order) into `target_locations`, or new
        tensors; None for a page that could not be loaded."""
        targets = list(target_locations or [None] * len(keys))
        out: list[torch.Tensor | None] = []
        for start in range(0, len(keys), _SCRATCH_PAGES):
            part = keys[start:start + _SCRATCH_PAGES]
            with self._locks["copy"]:
                io = self._scratch_io()
                if io is None:
                    return out + [None] * (len(keys) - len(out))
                scratch, kv = io
                chunks = self._chunks(part, list(range(len(part))), None)
                for i, ok in enumerate(_run(kv, chunks, load=True)):
                    page = scratch[i].reshape(-1)
                    target = targets[start + i]
                    if not ok:
                        out.append(None)
                    elif target is None:
                        out.append(page.clone())
                    else:
                        out.append(target.copy_(page.view_as(target)))
        return out

    def get(self, key: str, target_location: Optional[Any] = None,
            target_sizes: Optional[Any] = None) -> torch.Tensor | None:
        return self.batch_get([key], [target_location])[0]

    def batch_set(self, keys: list[str], values: Optional[Any] = None,
                  target_locations: Optional[Any] = None,
                  target_sizes: Optional[Any] = None) -> bool:
        """Stores flat pages (get_data_page's order); True when all are held."""
        values = list(values or [])
        if len(values) != len(keys):
            raise ValueError(f"kvdepot: {len(keys)} keys, {len(values)} pages")
        done = True
        for start in range(0, len(keys), _SCRATCH_PAGES):
            part = keys[start:start + _SCRATCH_PAGES]
            with self._locks["copy"]:
                io = self._scratch_io()
                if io is None:
                    return False
                scratch, kv = io
                for i, value in enumerate(values[start:start + len(part)]):
                    scratch[i].view(-1).copy_(value.reshape(-1))
                info = HiCacheStorageExtraInfo(prefix_keys=keys[:start])
                chunks = self._chunks(part, list(range(len(part))), info)
                done = all(_run(kv, chunks, load=False)) and done
        return done

    def set(self, key: str, value: Optional[Any] = None,
            target_location: Optional[Any] = None,
            target_sizes: Optional[Any] = None) -> bool:
        return self.batch_set([key], [value])

    def clear(self) -> bool:
        logger.warning("kvdepot: the store is shared; evict with kvdepotctl, "
                       "not from one engine")
        return False


def _key_bytes(key: str) -> bytes:
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"kvdepot: {key!r} is not an SGLang page hash")
    return raw


def _host_pages(host: Any) -> torch.Tensor:
    """The host pool's kv_buffer as [2 (K, V), page, *page axes], a view."""
    kv, page = host.kv_buffer, int(host.page_size)
    if host.layout == "layer_first":  # [2, L, tokens, H, D]
        return kv.unflatten(2, (-1, page)).transpose(1, 2)
    if host.layout == "page_first":  # [2, tokens, L, H, D]
        return kv.unflatten(1, (-1, page))
    return kv  # page_first_direct [2, N, L, T, H, D], page_head [2, N, H, T, L, D]


def _paged_kv(store: kvdepot.Store, spec: kvdepot.ModelSpec, layout: str,
              pages: torch.Tensor) -> kvdepot.PagedKV:
    """PagedKV over `pages` ([2, page, *layout's page axes]): per layer the
    K and V views that remain once the layer axis is indexed."""
    axes, dims = _LAYOUTS[layout]
    at = 1 + axes.index("L")  # in pages[0], [page, *axes]
    layers = [(pages[0].select(at, l), pages[1].select(at, l))
              for l in range(spec.num_layers)]
    return kvdepot.PagedKV(store, spec, layers, dims=dims)


def _run(kv: kvdepot.PagedKV | None, chunks: list[Chunk], load: bool) -> list[bool]:
    """Loads or saves `chunks` (all fail while the store is unreachable) and
    counts the outcome."""
    if kv is None:
        results: list = [None] * len(chunks)
    else:
        try:
            results = kv.load(chunks) if load else kv.save(chunks)
        except (ConnectionError, RuntimeError) as e:
            logger.warning("kvdepot: %s failed: %s", "load" if load else "save", e)
            results = [None] * len(chunks)
    done, failed = ("loaded_pages", "load_failures") if load else \
        ("saved_pages", "save_failures")
    oks = []
    for (key, *_), status in zip(chunks, results):
        ok = status is not None and status.ok
        _STATS[done if ok else failed] += 1
        if not ok and not (load and status is not None and status.code == "NOT_FOUND"):
            logger.warning("kvdepot: page %s not %s: %s", key.hex()[:16],
                           "loaded" if load else "saved",
                           status or "store unreachable")
        oks.append(ok)
    return oks


def _root_chains_at(fingerprint: bytes) -> Callable[[], None]:
    """Makes SGLang's storage hash chains start at `fingerprint` in this
    process (see the module docstring); returns the undo."""
    from sglang.srt.mem_cache import utils

    current = utils.storage_namespace_seed
    original = getattr(current, "kvdepot_original", current)
    installed = getattr(current, "kvdepot_fingerprint", None)
    if installed not in (None, fingerprint):
        raise ValueError("kvdepot: another namespace already roots SGLang's "
                         "page hashes in this process")

    def seed(extra_key: Optional[str], cache_salt: Optional[str]) -> str:
        own = original(extra_key, cache_salt)
        if own is None:
            return fingerprint.hex()
        return hashlib.sha256(fingerprint + bytes.fromhex(own)).hexdigest()

    seed.kvdepot_original = original  # type: ignore[attr-defined]
    seed.kvdepot_fingerprint = fingerprint  # type: ignore[attr-defined]

    def rebind(old: Any, new: Any) -> None:
        # Modules that imported the name hold their own binding.
        for name, module in list(sys.modules.items()):
            if name.startswith("sglang") and \
                    getattr(module, "__dict__", {}).get("storage_namespace_seed") is old:
                module.storage_namespace_seed = new

    rebind(current, seed)
    return lambda: rebind(seed, original)


def _sglang_model() -> tuple[str, str]:
    """(--model-path, --revision) of the SGLang server in this process, or
    empty strings outside one."""
    try:
        from sglang.srt.runtime_context import get_model

        model = get_model()
        return str(model.model_path or ""), str(model.revision or "")
    except Exception:  # no server context (tests, tools)
        return "", ""


def _rope_theta(model: str, revision: str) -> float:
    """rope_theta as vLLM's connector reads it from the model's config."""
    try:
        from transformers import AutoConfig

        hf = AutoConfig.from_pretrained(model, revision=revision or None)
    except Exception as e:
        raise ValueError(f"kvdepot: cannot read the config of {model!r} for "
                         "rope_theta; set rope_theta in the extra config") from e
    return rope_theta(hf)
