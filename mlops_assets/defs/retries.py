"""The step retry policy of the model's jobs: a step that fails on a transient error (a disk or network hiccup,
a DuckDB lock held too long) is tried again in the same run, after a short delay (2 s, then 4 s), before the run fails.

What is not retried, because running it again gives the same answer: a failed blocking check (a gate, a schema
check: Dagster does not retry those) and a `dg.Failure(allow_retries=False)`, which the assets raise for a
known, deterministic stop (no champion yet, a missing upstream day, a file that cannot be read). Any other
exception is treated as possibly transient: at worst a deterministic bug costs two more attempts. A run whose
worker crashed is the instance's business (run monitoring and run retries in dagster.yaml), not this policy's.
"""

import dagster as dg

STEP_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL,
                                   jitter=dg.Jitter.PLUS_MINUS)
