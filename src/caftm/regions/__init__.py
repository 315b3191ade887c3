"""caftm.regions."""
