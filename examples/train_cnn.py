"""Carbon-aware training of a small CNN in plain PyTorch, on the CPU in a few seconds.

The script is an ordinary training loop with CarbonAwareTraining (the loop itself is
``caftm.demo.worker``'s: ``src/caftm/demo/worker.py``, shipped so that ``caftm demo`` runs
anywhere). Run it alone and it trains at the config's start site until caftm says move or pause;
run it under the supervisor and the job follows the grid from site to site:

    python examples/train_cnn.py --config examples/job.yaml     # one leg, then it stops
    caftm run examples/job.yaml                                  # the whole job, moved as needed

Intensities come from caftm's embedded typical-year profiles (derived from Electricity Maps 2022
data); without an NVIDIA GPU the GPU is SIMULATED, and the output says so.
"""

from __future__ import annotations

import sys

from caftm.demo.worker import main

if __name__ == "__main__":
    sys.exit(main())
