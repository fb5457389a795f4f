"""Trained vectors out: word2vec text/binary files, their scores and nearest neighbours."""
