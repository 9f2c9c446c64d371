"""Report jobs that break in every way a worker can (imported by spawned workers by name)."""

import os
import signal
import time


def run(job: tuple) -> tuple:
    kind, key = job
    if key.endswith("relative"):
        os.kill(os.getpid(), signal.SIGKILL)
    if key.endswith("composition"):
        time.sleep(600)
    if key.endswith("pairings"):
        raise RuntimeError("the relation broke")
    from seqcheck.equiv.report import claim_record
    from seqcheck.equiv.registry import get_claim

    return job, claim_record(get_claim(key))
