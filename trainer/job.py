"""Run one job request in its own process: ``python -m trainer.job JOB.json SETTINGS.json RESULT.json``.

The trainer agent starts one such process per job, so a job that crashes — an exception, a
segfault in a native library, running out of memory — fails that job only. The process writes a
:class:`~schemas.messages.JobResult` to ``RESULT.json`` (``failed`` with the error when the job
raised) and exits 0; any other exit means it crashed before it could write one.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console

from schemas.messages import EvaluateJob, JobResult, OptimizeJob, RlJob, TrainJob, parse_job
from trainer.pipeline import TrainerSettings, run_train_job


def run_job(
    job: TrainJob | EvaluateJob | OptimizeJob | RlJob,
    settings: TrainerSettings,
    console: Console | None = None,
) -> JobResult:
    """Run ``job``; a failure becomes a ``failed`` result with a one-line reason."""
    started = time.monotonic()
    console = console or Console(stderr=True)
    try:
        if isinstance(job, TrainJob):
            return run_train_job(
                job.params, settings, job=job.job, console=console, requested_by=job.requested_by
            )
        if isinstance(job, OptimizeJob):
            from trainer.race.job import run_optimize_job

            return run_optimize_job(job.params, settings, job=job.job, console=console)
        if isinstance(job, RlJob):
            from trainer.rl.job import run_rl_job

            return run_rl_job(job.params, settings, job=job.job, console=console)
        from trainer.evaluate import run_evaluate_job

        return run_evaluate_job(job.params, settings, job=job.job, console=console)
    except Exception as exc:
        console.print(traceback.format_exc())
        return JobResult(
            job=job.job,
            kind=job.kind,
            status="failed",
            ts=time.time(),
            error=f"{type(exc).__name__}: {exc}",
            duration_s=time.monotonic() - started,
        )


def _die_with_agent() -> None:
    """Linux: end this job when the agent that started it dies, however it dies. The job runs in a
    session of its own (so a terminal's Ctrl-C reaches only the agent, which stops it in order);
    without this an agent killed outright would leave the job training for nobody."""
    agent = os.environ.get("PADDOCK_AGENT_PID")
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if agent and os.getppid() != int(agent):  # the agent was gone before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    _die_with_agent()
    parser = argparse.ArgumentParser(prog="python -m trainer.job", description=__doc__)
    parser.add_argument("job", type=Path, help="the job request (JSON)")
    parser.add_argument("settings", type=Path, help="TrainerSettings (JSON)")
    parser.add_argument("result", type=Path, help="where to write the JobResult (JSON)")
    args = parser.parse_args(argv)
    job = parse_job(args.job.read_bytes())
    if not isinstance(job, TrainJob | EvaluateJob | OptimizeJob | RlJob):
        raise SystemExit(f"this trainer runs train, evaluate, optimize and rl jobs, not {job.kind}")
    settings = TrainerSettings.model_validate_json(args.settings.read_text())
    result = run_job(job, settings)
    tmp = args.result.with_name(args.result.name + ".tmp")
    tmp.write_bytes(result.to_json())
    tmp.replace(args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
