"""Corpus mode: what each neuron and head does in real text, over many documents, on a Dask cluster.

The layer sits above report (it reuses the report folder's manifest rules) and below views (which read a
store into the report). inputs reads and windows the documents, topk is the exact, deterministic top-k
selection and its merge, shard is what a worker runs, store is the store folder, engine drives the cluster.
Only engine imports dask: reading a store never does.
"""
