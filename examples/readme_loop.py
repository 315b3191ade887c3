"""The README's "Use it" loop, run as it is printed there (a test keeps the two equal).

A generated dataset and a small CNN stand in for yours; the block between the two marker lines
is the README's. Run it in a folder holding the job's ``job.yaml``; run it again after a move,
pause or Ctrl-C and it resumes where it stopped, ending with the weights of a run that never
stopped (every stateful object is given: model, optimizer, scheduler, scaler, sampler):

    cd examples && python readme_loop.py
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

torch.use_deterministic_algorithms(True)
images = torch.randn(512, 1, 12, 12, generator=torch.Generator().manual_seed(0))
dataset = TensorDataset(images, (images.mean(dim=(1, 2, 3)) > 0).long())
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(1152, 2))

# --- README "Use it" begins ---
import torch
from torch.utils.data import DataLoader

from caftm.checkpoint import ResumableSampler
from caftm.control import ControllerConfig
from caftm.integrations.torch import CarbonAwareTraining

config = ControllerConfig.from_yaml("job.yaml")  # sites, θ, policy, total_steps (job: skipped)
device = "cuda" if torch.cuda.is_available() else "cpu"
model = model.to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.total_steps)
scaler = torch.amp.GradScaler(device, enabled=device == "cuda")  # mixed precision on a GPU
sampler = ResumableSampler(len(dataset), shuffle=True, seed=1)
loader = DataLoader(dataset, batch_size=32, sampler=sampler, generator=torch.Generator())
with CarbonAwareTraining(config, model=model, optimizer=optimizer, scheduler=scheduler,
                         scaler=scaler, sampler=sampler, checkpoint_every_steps=200) as caftm:
    while caftm.running:                      # resumes from the latest checkpoint on entry
        for x, y in loader:
            optimizer.zero_grad()
            with torch.autocast(device, enabled=device == "cuda"):
                loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            caftm.step()                      # Scaling / Tolerance / Suspend / Migration
            if not caftm.running:
                break
# caftm.outcome: COMPLETED, MOVED, PAUSED or PREEMPTED (SIGTERM/Ctrl-C: checkpointed first)
# --- README "Use it" ends ---

print(f"{caftm.outcome.value} at step {caftm.steps_done} (resumed from step {caftm.start_step})")
