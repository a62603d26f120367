"""What one trial does: load data, build CNNs, train k folds in lockstep, score them."""
