"""caftm.jobs: job specs, the worker protocol, the supervisor and its executors."""
