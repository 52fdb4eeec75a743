"""Process CPU and memory with several workers, summed over them.

prometheus-client's `ProcessCollector` reports the process that renders `/metrics`; in
multiprocess mode that is whichever worker (or the supervisor) answers, so its values would
jump between processes from scrape to scrape. Here each worker copies its own CPU time and
resident memory into multiprocess metrics of the same names at every flush (four a second),
and the scrape reports their sum: CPU over every worker that ever ran, memory over the live
ones.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector


class SummedProcessMetrics:
    """`process_cpu_seconds_total` and `process_resident_memory_bytes` of this worker, for
    the multiprocess sum."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._source = ProcessCollector(registry=None)
        self._cpu = Counter(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds, summed over the workers.",
            registry=registry,
        )
        self._resident = Gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes, summed over the live workers.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._cpu_counted = 0.0

    def flush(self) -> None:
        for family in self._source.collect():
            for sample in family.samples:
                if sample.name == "process_cpu_seconds_total":
                    self._cpu.inc(max(0.0, sample.value - self._cpu_counted))
                    self._cpu_counted = max(self._cpu_counted, sample.value)
                elif sample.name == "process_resident_memory_bytes":
                    self._resident.set(sample.value)
