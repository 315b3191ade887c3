"""caftm.demo: the main job of ``caftm demo`` — a small CNN trained carbon-aware on the CPU.

:mod:`caftm.demo.worker` is an ordinary training script written with
:class:`~caftm.integrations.torch.CarbonAwareTraining` (it runs alone or under ``caftm run``);
:mod:`caftm.demo.showcase` runs it through the job supervisor on the embedded profiles with an
accelerated clock and compares it with a carbon-agnostic run.
"""
