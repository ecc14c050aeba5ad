"""kvdepot: the engine side of the kvdepot KV-cache store.

The C++ library does the work (kvdepot._native); this package names it:

    spec = kvdepot.ModelSpec()           # the namespace (DESIGN.md 3.1)
    keys = kvdepot.chunk_keys(spec, token_ids)
    store = kvdepot.Store.connect("10.0.0.5:7400", token=token)
    kv = kvdepot.PagedKV(store, spec, [(k, v) for each layer], dims="NHTD")
    kv.save([(key, parent, block_ids, first_block_offset), ...])
    kv.load([...])                       # one Status per chunk
    load = kv.load_layers([...], 4)      # 4 layers a fetch, on a thread
    load.wait_layer(i); load.wait()      # layer i is in; one Status per chunk

ClusterKV (compress/cluster, store/client/cluster_recall.h):

    index = kvdepot.ClusterIndex.build(keys)     # [L][H][T][D] float32
    positions, clusters = index.select(layer, head, query, total, budget)
    kvdepot.put_cluster_index(store, spec, chunk_keys[-1], index)
    recall = kvdepot.ClusterRecall(store, spec, chunk_keys, index)
    rows = recall.recall([(layer, head, clusters)])  # (k, v) bytes per cluster
"""

from kvdepot._native import (
    ClusterIndex,
    ClusterRecall,
    DType,
    LayerLoad,
    ModelSpec,
    PagedKV,
    Status,
    Store,
    chunk_keys,
    get_cluster_index,
    put_cluster_index,
)

__all__ = ["ClusterIndex", "ClusterRecall", "DType", "LayerLoad", "ModelSpec", "PagedKV", "Status", "Store", "chunk_keys",
           "get_cluster_index", "put_cluster_index"]
