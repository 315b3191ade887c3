"""caftm.gpu."""
