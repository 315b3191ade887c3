"""caftm.control."""
