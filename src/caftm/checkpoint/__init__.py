"""caftm.checkpoint."""
