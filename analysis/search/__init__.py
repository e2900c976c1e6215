"""The search layer: the vocabulary as each kind of vector is compared with it (spaces), exact and
low-rank kNN (knn, select, lowrank), the disk cache, neuron meanings, and the matches the views show.

It imports only minigpt2 and itself; the views and the report build on it (tests/test_layers.py).
"""
