"""Corpus text to training data: tokenize, count the vocabulary, pack WebDataset shards; `synth` makes corpora with planted structure."""
