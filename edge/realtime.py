"""Real-time scheduling of the car's own threads (the control loop, the detector's worker)."""

import logging
import os

log = logging.getLogger(__name__)


def raise_thread_priority(priority: int | None, thread: str) -> bool:
    """Run the calling thread (only it) under SCHED_FIFO at ``priority``; None leaves it as it is.
    Refused (no CAP_SYS_NICE, no such policy here): a warning, and the thread runs on as before."""
    if priority is None:
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: this thread
    except (PermissionError, OSError, AttributeError) as exc:
        log.warning(
            "cannot give the %s thread real-time priority %d (%s); it needs CAP_SYS_NICE",
            thread,
            priority,
            exc,
        )
        return False
    log.info("%s thread runs SCHED_FIFO at priority %d", thread, priority)
    return True
