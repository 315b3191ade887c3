"""caftm.signals."""
