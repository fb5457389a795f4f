"""Training: shards stream in, the SGNS step updates two tables, ranks agree, rank 0 checkpoints and logs."""
