"""kvdepot._native against a real node: keys, connect, save and load of a
paged cache in vLLM's CPU layout (per layer one tensor
[blocks, kv_heads, block_size, 2 * head_dim], K in the first half of the last
dimension), and the errors bad input gets."""

import hashlib
import struct

import numpy as np
import pytest

import kvdepot
from conftest import TOKEN

BLOCK = 16
BLOCKS = 12


def small_spec() -> kvdepot.ModelSpec:
    spec = kvdepot.ModelSpec()
    spec.model_id = "test/engine-adapters"
    spec.dtype = kvdepot.DType.f16
    spec.num_layers = 2
    spec.kv_heads = 2
    spec.head_dim = 8
    spec.chunk_tokens = 32
    return spec


def paged_cache(spec, seed):
    rng = np.random.default_rng(seed)
    layers = [
        rng.standard_normal(
            (BLOCKS, spec.kv_heads, BLOCK, 2 * spec.head_dim)).astype(np.float16)
        for _ in range(spec.num_layers)
    ]
    views = [(t[..., :spec.head_dim], t[..., spec.head_dim:]) for t in layers]
    return layers, views


def test_chunk_keys_follow_the_design_chain():
    spec = small_spec()
    tokens = list(range(1000, 1000 + 2 * spec.chunk_tokens + 5))
    keys = kvdepot.chunk_keys(spec, tokens)
    assert len(keys) == 2  # the partial tail is not keyed
    # key(i) = SHA-256(key(i-1) || tokens of chunk i as u32 little-endian)
    prev = spec.fingerprint()
    for i, key in enumerate(keys):
        chunk = tokens[i * spec.chunk_tokens:(i + 1) * spec.chunk_tokens]
        prev = hashlib.sha256(prev + struct.pack(f"<{len(chunk)}I", *chunk)).digest()
        assert key == prev
    salted = small_spec()
    salted.tenant_salt = "tenant-b"
    assert kvdepot.chunk_keys(salted, tokens)[0] != keys[0]


def test_save_then_load_into_other_blocks(node):
    spec = small_spec()
    store = kvdepot.Store.connect(node, token=TOKEN, ucx_tls="tcp")
    src, src_views = paged_cache(spec, 1)
    dst, dst_views = paged_cache(spec, 2)
    keys = kvdepot.chunk_keys(spec, list(range(3 * spec.chunk_tokens)))
    saver = kvdepot.PagedKV(store, spec, src_views, dims="NHTD")
    saved = saver.save([(keys[0], b"", [3, 7], 0), (keys[1], keys[0], [1, 0], 0)])
    assert all(s.ok for s in saved), saved
    assert store.lookup(keys) == 2

    loader = kvdepot.PagedKV(store, spec, dst_views, dims="NHTD")
    untouched = [t[5].copy() for t in dst]
    loaded = loader.load([(keys[0], b"", [9, 4], 0), (keys[1], keys[0], [2, 11], 0),
                          (keys[2], keys[1], [5, 6], 0)])
    assert loaded[0].ok and loaded[1].ok, loaded
    assert loaded[2].code == "NOT_FOUND"
    for s, d in zip(src, dst):
        np.testing.assert_array_equal(d[[9, 4]], s[[3, 7]])
        np.testing.assert_array_equal(d[[2, 11]], s[[1, 0]])
    for before, t in zip(untouched, dst):  # the miss wrote nothing
        np.testing.assert_array_equal(t[5], before)


def test_layer_load_reports_layers_in_order(node):
    spec = small_spec()
    spec.num_layers = 4
    store = kvdepot.Store.connect(node, token=TOKEN, ucx_tls="tcp")
    src, src_views = paged_cache(spec, 4)
    dst, dst_views = paged_cache(spec, 5)
    keys = kvdepot.chunk_keys(spec, list(range(500, 500 + 2 * spec.chunk_tokens)))
    saver = kvdepot.PagedKV(store, spec, src_views, dims="NHTD")
    assert all(s.ok for s in saver.save([(keys[0], b"", [3, 7], 0),
                                         (keys[1], keys[0], [1, 0], 0)]))
    loader = kvdepot.PagedKV(store, spec, dst_views, dims="NHTD")
    load = loader.load_layers([(keys[0], b"", [9, 4], 0),
                               (keys[1], keys[0], [2, 11], 0)], 1)
    for layer in range(spec.num_layers):
        load.wait_layer(layer)  # the layer is in place once this returns
        np.testing.assert_array_equal(dst[layer][[9, 4]], src[layer][[3, 7]])
        np.testing.assert_array_equal(dst[layer][[2, 11]], src[layer][[1, 0]])
    assert all(s.ok for s in load.wait())
    # A miss ends the wait for every layer; the PagedKV serves the next call.
    missing = kvdepot.chunk_keys(spec, list(range(spec.chunk_tokens)))[0]
    load = loader.load_layers([(missing, b"", [5, 6], 0)], 2)
    load.wait_layer(spec.num_layers - 1)
    assert [s.code for s in load.wait()] == ["NOT_FOUND"]
    assert loader.load([(keys[0], b"", [5, 6], 0)])[0].ok


def test_cluster_index_recall_from_the_store(node):
    spec = small_spec()
    spec.dtype = kvdepot.DType.f32
    spec.chunk_tokens = BLOCK  # one block per chunk
    store = kvdepot.Store.connect(node, token=TOKEN, ucx_tls="tcp")
    rng = np.random.default_rng(6)
    layers = [rng.standard_normal((BLOCKS, spec.kv_heads, BLOCK, 2 * spec.head_dim))
              .astype(np.float32) for _ in range(spec.num_layers)]
    views = [(t[..., :spec.head_dim], t[..., spec.head_dim:]) for t in layers]
    tokens = BLOCKS * BLOCK
    keys = kvdepot.chunk_keys(spec, list(range(7, 7 + tokens)))
    kv = kvdepot.PagedKV(store, spec, views, dims="NHTD")
    assert all(s.ok for s in kv.save([(k, keys[i - 1] if i else b"", [i], 0)
                                      for i, k in enumerate(keys)]))
    # The keys in token order: [layers][heads][tokens][head_dim].
    k_all = np.stack([t[..., :spec.head_dim].transpose(1, 0, 2, 3)
                      .reshape(spec.kv_heads, tokens, spec.head_dim) for t in layers])
    index = kvdepot.ClusterIndex.build(np.ascontiguousarray(k_all), sinks=4,
                                       tokens_per_cluster=12)
    assert (index.layers, index.kv_heads, index.clustered_end) == (2, 2, tokens)
    positions, clusters = index.select(1, 0, k_all[1, 0, 100], tokens, 40, 4)
    assert positions == sorted(positions) and len(positions) <= 40
    assert positions[:4] == [0, 1, 2, 3] and clusters
    with pytest.raises(ValueError, match="select"):
        index.select(2, 0, k_all[1, 0, 100], tokens, 40, 4)

    kvdepot.put_cluster_index(store, spec, keys[-1], index)
    stored = kvdepot.get_cluster_index(store, spec, keys[-1])
    assert stored.encode() == index.encode()
    with pytest.raises(KeyError):
        kvdepot.get_cluster_index(store, spec, keys[0])
    recall = kvdepot.ClusterRecall(store, spec, keys, stored)
    rows = recall.recall([(1, 0, clusters)])
    offsets, members = stored.clusters(1, 0)
    for c, (k, v) in zip(clusters, rows[0]):
        pos = members[offsets[c]:offsets[c + 1]]
        blocks, slots = np.divmod(pos, BLOCK)
        assert k == layers[1][blocks, 0, slots, :spec.head_dim].tobytes()
        assert v == layers[1][blocks, 0, slots, spec.head_dim:].tobytes()
    recall.recall([(1, 0, clusters)])  # cached: nothing moves
    calls, fetched, cached, _ = recall.stats
    assert (calls, fetched, cached) == (2, len(clusters), len(clusters))


def test_bad_input_is_refused_clearly(node):
    spec = small_spec()
    store = kvdepot.Store.connect(node, token=TOKEN, ucx_tls="tcp")
    _, views = paged_cache(spec, 3)
    with pytest.raises(ValueError, match="does not match"):
        wrong = small_spec()
        wrong.kv_heads = 4
        kvdepot.PagedKV(store, wrong, views, dims="NHTD")
    with pytest.raises(ValueError, match="dims"):
        kvdepot.PagedKV(store, spec, views, dims="NHQD")
    kv = kvdepot.PagedKV(store, spec, views, dims="NHTD")
    key = kvdepot.chunk_keys(spec, list(range(spec.chunk_tokens)))[0]
    with pytest.raises(ValueError, match="32 bytes"):
        kv.save([(b"short", b"", [0, 1], 0)])
    bad = kv.save([(key, b"", [0, BLOCKS], 0)])  # block out of range
    assert bad[0].code == "INVALID_ARGUMENT", bad
    with pytest.raises(PermissionError):
        kvdepot.Store.connect(node, token="wrong", ucx_tls="tcp")
    with pytest.raises(ConnectionError):
        kvdepot.Store.connect("127.0.0.1:1", token=TOKEN, timeout_s=2)
