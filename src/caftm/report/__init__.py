"""caftm.report: figures of what a job did, drawn from the ledger (matplotlib, no display)."""
