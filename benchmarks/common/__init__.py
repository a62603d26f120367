"""What the benchmark scripts share: running ``batchlr run`` as a user would."""
