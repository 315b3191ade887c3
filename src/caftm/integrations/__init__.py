"""caftm.integrations."""
