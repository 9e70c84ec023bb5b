"""The process's garbage-collector settings, applied once the service is built (`parkwatch run`; the
benchmark applies them too where it runs parts of the service in its own process).

- What is built by then (~100,000 objects: modules, schemas, the service) lives as long as the process:
  it is frozen, out of the cyclic collector's way, so a full collection, which stops every thread, walks
  only what was made since.
- The youngest generation is collected after 50,000 new container objects instead of 700. The service
  allocates in bursts of batches (a drained batch of 5,000 points is some 50,000 dicts, tuples and
  points), nearly all freed by reference counting; at 700 the collector walked each batch over and over.
  The benchmark's spool drain went from 50,577 to 57,031 readings/s (single runs). Cyclic garbage (exceptions with
  their tracebacks, mostly) is still collected, after 50,000 allocations rather than 700.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def settle() -> None:
    """Freeze what exists now and make young collections rarer (see the module docstring)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
