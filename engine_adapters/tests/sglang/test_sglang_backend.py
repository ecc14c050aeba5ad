"""KVDepotHiCacheStorage against SGLang's own HiCache classes (sglang from
PyPI), with real tensors and a real kvdepot-node.

SGLang's StorageBackendFactory builds the backend from the extra config of
`--hicache-storage-backend dynamic` and it is registered with a real
MHATokenToKVPoolHost in each host layout, as HiCacheController.attach does.
Pages go through both interfaces (the zero-copy batch_get_v1 / batch_set_v1
and the copying get / set / batch_get / batch_set, with the flat pages
SGLang's controller hands them) and come back bit for bit. SGLang's page
hashes, from its own get_storage_hash_str, are kvdepot's chunk keys of the
same tokens, and a vLLM-side PagedKV (the mechanism of kvdepot.vllm) reads
what SGLang stored and the other way round. A store that cannot be reached
is a miss, never an error.

The page hashes are SGLang's own: its C++ hash loop
(mem_cache/cpp_utils/hash_binding.cpp), which torch's cpp_extension builds
at first use (under $TORCH_EXTENSIONS_DIR).
"""

import array
import os
from typing import Any

import pytest
import torch

if os.environ.get("KVD_REQUIRE_SGLANG") != "1":  # deploy/test.sh sets it
    pytest.importorskip("sglang.srt.mem_cache.hicache_storage",
                        reason="SGLang from PyPI is not installed "
                        "(engine_adapters/requirements-sglang.txt)")

from sglang.srt.mem_cache import utils as sgl_utils  # noqa: E402
from sglang.srt.mem_cache.hicache_storage import (  # noqa: E402
    HiCacheStorage,
    HiCacheStorageConfig,
    HiCacheStorageExtraInfo,
)
from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool  # noqa: E402
from sglang.srt.mem_cache.pool_host.mha import MHATokenToKVPoolHost  # noqa: E402
from sglang.srt.mem_cache.radix_cache import RadixKey  # noqa: E402
from sglang.srt.mem_cache.storage import StorageBackendFactory  # noqa: E402

import kvdepot  # noqa: E402
from conftest import TOKEN  # noqa: E402
from kvdepot.sglang import KVDepotHiCacheStorage  # noqa: E402

LAYERS, HEADS, DIM, PAGE = 3, 2, 16, 16
ROPE = 10000.0
MODEL = "test/sglang-and-vllm"
LAYOUTS = ["layer_first", "page_first", "page_first_direct", "page_head"]


def make_host(layout: str, pages: int = 16) -> MHATokenToKVPoolHost:
    device = MHATokenToKVPool(pages * PAGE, PAGE, torch.bfloat16, HEADS, DIM,
                              LAYERS, "cpu", False, start_layer=0,
                              end_layer=LAYERS)
    return MHATokenToKVPoolHost(
        device.get_device_pool_infos()[0].buffer_info, 2.0, 0, PAGE, layout,
        pin_memory=False, device="cpu", device_capacity_tokens=device.size,
        start_layer=0, end_layer=LAYERS)


def extra_config(address: str, **over: Any) -> dict:
    e = {"backend_name": "kvdepot", "module_path": "kvdepot.sglang",
         "class_name": "KVDepotHiCacheStorage", "interface_v1": 1,
         "address": address, "token": TOKEN, "ucx_tls": "tcp",
         "timeout_s": 5, "rope_theta": ROPE}
    e.update(over)
    return e


def storage_config(extra: dict, **over: Any) -> HiCacheStorageConfig:
    fields: dict = dict(tp_rank=0, tp_size=1, pp_rank=0, pp_size=1,
                        attn_cp_rank=0, attn_cp_size=1, is_mla_model=False,
                        enable_storage_metrics=False,
                        is_page_first_layout=False, model_name=MODEL,
                        extra_config=extra)
    fields.update(over)
    return HiCacheStorageConfig(**fields)


class Attached:
    """A backend made by SGLang's factory and registered with `host`, as
    HiCacheController.attach_storage_backend does; closed on exit."""

    def __init__(self, host: MHATokenToKVPoolHost, extra: dict):
        self.host, self.extra = host, extra

    def __enter__(self) -> KVDepotHiCacheStorage:
        backend = StorageBackendFactory.create_backend(
            "dynamic", storage_config(self.extra), self.host)
        backend.register_mem_pool_host(self.host)
        self.backend = backend
        return backend

    def __exit__(self, *exc: Any) -> None:
        self.backend.close()


def vllm_spec() -> kvdepot.ModelSpec:
    """The namespace kvdepot.vllm builds for the same model."""
    spec = kvdepot.ModelSpec()
    spec.model_id = MODEL
    spec.dtype = kvdepot.DType.bf16
    spec.num_layers, spec.kv_heads, spec.head_dim = LAYERS, HEADS, DIM
    spec.rope_theta = ROPE
    spec.chunk_tokens = PAGE
    return spec


def prompt(seed: int, pages: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 150_000, (pages * PAGE,), generator=g).tolist()


def sglang_keys(tokens: list[int]) -> list[str]:
    """SGLang's storage page hashes, as its controller computes them."""
    return sgl_utils.get_storage_hash_str(tokens, None, page_size=PAGE)


def fill(host: MHATokenToKVPoolHost, pages: int,
         seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`pages` host pages of random values, through SGLang's own accessor:
    their host indices and flat pages."""
    indices = host.alloc(pages * PAGE)
    g = torch.Generator().manual_seed(seed)
    flat = []
    for i in range(pages):
        page = torch.randn(host.get_dummy_flat_data_page().shape,
                           generator=g).to(host.dtype)
        host.set_from_flat_data_page(int(indices[i * PAGE]), page)
        flat.append(page)
    return indices, flat


def host_page(host: MHATokenToKVPoolHost, index: int) -> torch.Tensor:
    return host.get_data_page(index, flat=True)


def khtd(host: MHATokenToKVPoolHost, index: int, layer: int, kv: int) -> torch.Tensor:
    """One page's K (kv=0) or V of one layer as [head, token, dim], read from
    kv_buffer as MHATokenToKVPoolHost.init_kv_buffer lays each layout out."""
    b, page = host.kv_buffer[kv], index // PAGE
    if host.layout == "layer_first":  # [L, tokens, H, D]
        return b[layer, index:index + PAGE].permute(1, 0, 2)
    if host.layout == "page_first":  # [tokens, L, H, D]
        return b[index:index + PAGE, layer].permute(1, 0, 2)
    if host.layout == "page_first_direct":  # [pages, L, T, H, D]
        return b[page, layer].permute(1, 0, 2)
    return b[page, :, :, layer]  # page_head [pages, H, T, L, D]


def test_sglang_page_hashes_are_kvdepot_chunk_keys(node):
    host = make_host("page_first")
    tokens = prompt(1, 5)
    own = sglang_keys(tokens)  # SGLang's root: no prior
    with Attached(host, extra_config(node)) as backend:
        assert isinstance(backend, HiCacheStorage)
        assert backend.spec.fingerprint() == vllm_spec().fingerprint()
        keys = sglang_keys(tokens)
        assert [bytes.fromhex(k) for k in keys] == \
            kvdepot.chunk_keys(vllm_spec(), tokens)
        # A tree node's chain (RadixKey) is the same chain.
        assert sgl_utils.get_storage_hash_str(
            RadixKey(array.array("q", tokens)), None, page_size=PAGE) == keys
        # extra_key / cache_salt chains stay apart from plain prompts and
        # from each other, under this namespace.
        lora = sgl_utils.get_storage_hash_str(
            RadixKey(array.array("q", tokens), extra_key="lora-a"), None,
            page_size=PAGE)
        salted = sgl_utils.get_storage_hash_str(
            RadixKey(array.array("q", tokens), cache_salt="tenant-b"), None,
            page_size=PAGE)
        assert len({lora[0], salted[0], keys[0], own[0]}) == 4
    # close() gives SGLang its own root back.
    assert sglang_keys(tokens) == own


@pytest.mark.parametrize("layout", LAYOUTS)
def test_zero_copy_pages_round_trip(node, layout):
    host = make_host(layout)
    tokens = prompt(2, 6)
    with Attached(host, extra_config(node)) as backend:
        keys = sglang_keys(tokens)
        assert backend.batch_exists(keys) == 0
        indices, pages = fill(host, 6, seed=3)
        # Two batches, as the backup thread cuts them, the second with the
        # keys before it.
        first = HiCacheStorageExtraInfo(prefix_keys=[])
        second = HiCacheStorageExtraInfo(prefix_keys=keys[:4])
        assert backend.batch_set_v1(keys[:4], indices[:4 * PAGE], first) == [True] * 4
        assert backend.batch_set_v1(keys[4:], indices[4 * PAGE:], second) == [True] * 2
        assert backend.batch_exists(keys) == 6
        assert backend.exists(keys[5])
        other = sglang_keys(prompt(4, 2))
        assert backend.batch_exists(keys[:3] + other) == 3
        assert not backend.exists(other[0])
        # Into other host pages, with a miss at the end.
        into = host.alloc(7 * PAGE)
        assert backend.batch_get_v1(keys + other[:1], into) == [True] * 6 + [False]
        for i in range(6):
            assert torch.equal(host_page(host, int(into[i * PAGE])), pages[i])
        # Saving again is fine (the store deduplicates).
        assert backend.batch_set_v1(keys[:2], into[:2 * PAGE]) == [True, True]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_copying_interface_and_both_paths_agree(node, layout):
    """get/set/batch_get/batch_set with flat pages, as SGLang's controller
    passes them without interface_v1; they and the v1 calls share objects."""
    host = make_host(layout)
    with Attached(host, extra_config(node, interface_v1=0)) as backend:
        keys = sglang_keys(prompt(5, 11))  # more than one scratch round
        indices, pages = fill(host, 11, seed=6)
        values = [host.get_data_page(int(indices[i * PAGE])) for i in range(11)]
        assert backend.batch_set(keys[:10], values[:10])
        assert backend.set(keys[10], values[10])
        targets = [host.get_dummy_flat_data_page() for _ in range(12)]
        missing = sglang_keys(prompt(7, 1))
        got = backend.batch_get(keys + missing, targets)
        assert got[-1] is None
        for i in range(11):
            assert got[i] is targets[i] and torch.equal(got[i], pages[i])
        assert torch.equal(backend.get(keys[3]), pages[3])
        assert backend.get(missing[0]) is None
        # What the copying calls stored, the zero-copy calls read, and back.
        into = host.alloc(11 * PAGE)
        assert all(backend.batch_get_v1(keys, into))
        for i in range(11):
            assert torch.equal(host_page(host, int(into[i * PAGE])), pages[i])
        more = sglang_keys(prompt(8, 2))
        more_indices, more_pages = fill(host, 2, seed=9)
        assert all(backend.batch_set_v1(more, more_indices))
        assert torch.equal(backend.get(more[1]), more_pages[1])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_vllm_and_sglang_share_chunks(node, layout):
    """A PagedKV over a vLLM-shaped cache ([block, head, token, dim] per
    layer, the keys from kvdepot.chunk_keys: kvdepot.vllm's mechanism) and
    SGLang's backend read each other's chunks."""
    spec = vllm_spec()
    store = kvdepot.Store.connect(node, token=TOKEN, ucx_tls="tcp")
    g = torch.Generator().manual_seed(10)
    cache = [tuple(torch.randn((8, HEADS, PAGE, DIM),
                               generator=g).to(torch.bfloat16)
                   for _ in range(2)) for _ in range(LAYERS)]
    vllm = kvdepot.PagedKV(store, spec, cache, dims="NHTD", staging_bytes=1 << 20)
    host = make_host(layout)
    with Attached(host, extra_config(node)) as backend:
        # vLLM saves a 3-chunk prompt from blocks 5, 2, 7; SGLang loads it.
        tokens = prompt(11, 3)
        keys = kvdepot.chunk_keys(spec, tokens)
        blocks = [5, 2, 7]
        saved = vllm.save([(k, keys[i - 1] if i else b"", [b], 0)
                           for i, (k, b) in enumerate(zip(keys, blocks))])
        assert all(s.ok for s in saved), saved
        hashes = sglang_keys(tokens)
        assert backend.batch_exists(hashes) == 3
        into = host.alloc(3 * PAGE)
        assert backend.batch_get_v1(hashes, into) == [True] * 3
        for i, block in enumerate(blocks):
            for layer in range(LAYERS):
                for kv in range(2):
                    assert torch.equal(khtd(host, int(into[i * PAGE]), layer, kv),
                                       cache[layer][kv][block])
        # SGLang saves another prompt; vLLM finds and loads it.
        tokens = prompt(12, 2)
        indices, _ = fill(host, 2, seed=13)
        assert backend.batch_set_v1(sglang_keys(tokens), indices) == [True] * 2
        keys = kvdepot.chunk_keys(spec, tokens)
        assert store.lookup(keys) == 2
        loaded = vllm.load([(keys[0], b"", [0], 0), (keys[1], keys[0], [4], 0)])
        assert all(s.ok for s in loaded), loaded
        for i, block in enumerate([0, 4]):
            for layer in range(LAYERS):
                for kv in range(2):
                    assert torch.equal(cache[layer][kv][block],
                                       khtd(host, int(indices[i * PAGE]), layer, kv))


def test_unreachable_store_is_a_miss():
    host = make_host("page_first")
    with Attached(host, extra_config("127.0.0.1:1", timeout_s=1)) as backend:
        keys = sglang_keys(prompt(14, 2))
        indices, pages = fill(host, 2, seed=15)
        assert backend.batch_exists(keys) == 0
        assert backend.batch_set_v1(keys, indices) == [False, False]
        assert backend.batch_get_v1(keys, indices) == [False, False]
        assert not backend.set(keys[0], pages[0])
        assert backend.get(keys[0], host.get_dummy_flat_data_page()) is None
        assert backend.batch_get(keys, [None, None]) == [None, None]
        stats = KVDepotHiCacheStorage.process_stats()
        assert stats.get("store_unavailable", 0) >= 1


def test_refuses_what_it_cannot_serve(node):
    host = make_host("page_first")
    with pytest.raises(ValueError, match="'address'"):
        KVDepotHiCacheStorage(storage_config({"rope_theta": ROPE}), {})
    with pytest.raises(NotImplementedError, match="tp_size"):
        KVDepotHiCacheStorage(storage_config(extra_config(node), tp_size=2,
                                             tp_rank=0), {})
    backend = KVDepotHiCacheStorage(
        storage_config(extra_config(node, chunk_tokens=2 * PAGE)), {})
    with pytest.raises(ValueError, match="--page-size"):
        backend.register_mem_pool_host(host)
    with pytest.raises(ValueError, match="not an SGLang page hash"):
        with Attached(host, extra_config(node)) as ok:
            ok.batch_exists(["hash0"])
