"""The worker protocol's environment variables, defined once.

:mod:`caftm.jobs.protocol` documents them (and is their public home); they live here, below both
:mod:`caftm.control` (whose config reads ``CAFTM_SITE``, ``CAFTM_LEDGER`` and
``CAFTM_EXCLUDE_SITES``, and whose controller records the job and leg) and :mod:`caftm.jobs`
(whose supervisor sets them), so that neither package imports the other for them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV_JOB = "CAFTM_JOB"
ENV_JOB_DIGEST = "CAFTM_JOB_DIGEST"
ENV_ADOPT_CHECKPOINTS_OF = "CAFTM_ADOPT_CHECKPOINTS_OF"
ENV_LEG = "CAFTM_LEG"
ENV_SITE = "CAFTM_SITE"
ENV_CHECKPOINT_URL = "CAFTM_CHECKPOINT_URL"
ENV_LEDGER = "CAFTM_LEDGER"
ENV_OUTCOME_FILE = "CAFTM_OUTCOME_FILE"
ENV_STATUS_FILE = "CAFTM_STATUS_FILE"
ENV_EXCLUDE_SITES = "CAFTM_EXCLUDE_SITES"
ENV_GRACE_S = "CAFTM_GRACE_S"
ENV_STANDBY_FILE = "CAFTM_STANDBY_FILE"
ENV_STANDBY_TOKEN = "CAFTM_STANDBY_TOKEN"
ENV_SITE_STORES = "CAFTM_SITE_STORES"


def worker_leg(env: Mapping[str, str] | None = None) -> tuple[str | None, int | None]:
    """(job, leg) this process runs as under a supervisor, or (None, None) when run alone."""
    environment = os.environ if env is None else env
    job = environment.get(ENV_JOB) or None
    try:
        leg = int(environment.get(ENV_LEG, ""))
    except ValueError:
        leg = None
    return job, leg
