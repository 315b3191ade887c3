"""caftm.ledger."""
