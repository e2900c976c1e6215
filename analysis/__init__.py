"""Vocabulary analysis of a minigpt2 Trace: kNN against the vocabulary, filters, the essay's tables, reports."""
from .search.knn import VocabIndex, topk
from .search.lookup import nearest_words
from .search.spaces import build_vocab, ln1_space, ln2_space, token_bias, unembed_space, word_ids
from .views.main import Report, analyze

__all__ = ["nearest_words", "topk", "VocabIndex", "analyze", "Report", "build_vocab", "token_bias", "word_ids",
           "ln1_space", "ln2_space", "unembed_space"]
