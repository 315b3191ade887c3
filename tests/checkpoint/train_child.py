"""Child process for the resume test: restore from the store, train, stop at a step, or finish.

Usage: train_child.py STORE TOTAL_STEPS EVERY [--exit-at STEP --mode crash|suspend]
[--final PATH]. Prints ``resumed STEP`` once restored. ``crash`` exits abruptly at the step
(losing the steps since the last checkpoint); ``suspend`` saves a checkpoint there, then exits.
"""

from __future__ import annotations

import argparse
import os

from ckpt_training import make_run, train, write_final

from caftm.checkpoint import CheckpointStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("total_steps", type=int)
    parser.add_argument("every", type=int)
    parser.add_argument("--exit-at", type=int, default=-1)
    parser.add_argument("--mode", choices=["crash", "suspend"], default="crash")
    parser.add_argument("--final", default="")
    args = parser.parse_args()

    run = make_run(schedule_steps=args.total_steps)
    store = CheckpointStore(args.store, keep_last=3) if args.store != "-" else None
    info = store.restore_latest(run.state) if store is not None else None
    start = info.step if info is not None else 0
    print(f"resumed {start}", flush=True)

    def after_step(step: int) -> None:
        if step != args.exit_at:
            return
        if args.mode == "suspend" and store is not None:
            store.save(run.state, step=step)
        os._exit(0 if args.mode == "suspend" else 3)

    train(
        run,
        start_step=start,
        total_steps=args.total_steps,
        store=store,
        checkpoint_every=args.every,
        after_step=after_step,
    )
    if args.final:
        write_final(run, args.final)


if __name__ == "__main__":
    main()
