"""``memkern scheduler run``: a worker that runs the scheduler's queued jobs.

The queue's operations (enqueue, status, retry) are commands of the operation table; running
jobs is not an operation but a process, so it is written here. Each job runs through the
dispatcher as the user who queued it (``memkern.scheduler``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from memkern.cli.state import DbOption, JsonFlag, StoreOption, emit_json, open_mos, state_of
from memkern.errors import InvalidInputError

PolicyOption = Annotated[Path | None, typer.Option("--policy", metavar="FILE.json", dir_okay=False,
                                                   help="SchedulerPolicy as JSON (docs/scheduler.md).")]


def _policy(path: Path | None) -> Any:
    from memkern.scheduler import SchedulerPolicy

    if path is None:
        return None
    try:
        return SchedulerPolicy.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read the scheduler policy {str(path)!r}: {exc}") from None


def scheduler_run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run the jobs that are due, then exit.")] = False,
    cube: Annotated[str | None, typer.Option("--cube", metavar="CUBE", help="Only this cube's jobs.")] = None,
    workers: Annotated[int | None, typer.Option(metavar="N", min=1, max=64, help="Worker threads.")] = None,
    maintenance: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="Also queue organize/promote/demote for every cube this often.")] = None,
    policy: PolicyOption = None, db: DbOption = None, store: StoreOption = None, as_json: JsonFlag = False,
) -> None:
    """Run queued jobs: until none is due (--once), or until interrupted."""
    from memkern.scheduler import Scheduler

    state = state_of(ctx, db, as_json, store)
    with open_mos(state) as mos:
        rules = _policy(policy)
        if maintenance is not None:
            rules = (rules or mos.scheduler.policy).model_copy(update={"maintenance_interval_s": maintenance})
        scheduler = Scheduler(mos.dispatcher, policy=rules) if rules is not None else mos.scheduler
        cube_id = mos.get_cube(cube).id if cube else None
        if once:
            ran = scheduler.run(cube_id, until_idle=True)
        else:
            forever = threading.Event()  # never set: the worker runs until interrupted
            scheduler.start(workers, cube_id)
            try:
                while not forever.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass
            finally:
                scheduler.stop()
            ran = -1
        status = scheduler.status(cube_id)
    if state.json:
        emit_json({"ran": ran, "status": status})
    else:
        if ran >= 0:
            typer.echo(f"ran {ran} job(s)")
        typer.echo(" ".join(f"{k}={v}" for k, v in status.counts.items()))
