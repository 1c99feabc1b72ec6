"""Training: target scaling, the training loop with checkpoints, metrics, saved models."""
