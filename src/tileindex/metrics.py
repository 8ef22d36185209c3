"""Run metrics for monitoring: Prometheus text exposition and the same as JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tileindex.fsio import write_atomic
from tileindex.report import WorkerStats, write_json_atomic

UNIT_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class RunMetrics:
    parameter_hash: str
    predicate: str
    tiles_total: int
    seconds: float
    units_total: int
    unit_seconds: tuple[float, ...]
    shard_flush_seconds: tuple[float, ...]
    worker_rss_bytes: Mapping[str, int]
    cache_hits: int = 0

    @classmethod
    def of_run(
        cls,
        parameter_hash: str,
        predicate: str,
        rows_emitted: int,
        seconds: float,
        unit_stats: Sequence[WorkerStats],
        part_stats: Sequence[WorkerStats],
        cache_hits: int,
    ) -> RunMetrics:
        """The metrics of a build from its units' and parts' task stats."""
        rss: dict[str, int] = {}
        for st in (*unit_stats, *part_stats):
            rss[st.worker] = max(rss.get(st.worker, 0), st.rss_peak_bytes)
        return cls(
            parameter_hash=parameter_hash,
            predicate=predicate,
            tiles_total=rows_emitted,
            seconds=seconds,
            units_total=len(unit_stats),
            unit_seconds=tuple(st.seconds for st in unit_stats),
            shard_flush_seconds=tuple(st.seconds for st in part_stats),
            worker_rss_bytes=rss,
            cache_hits=cache_hits,
        )

    @property
    def tiles_per_second(self) -> float:
        return self.tiles_total / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        doc = asdict(self)
        doc["worker_rss_bytes"] = dict(sorted(self.worker_rss_bytes.items()))
        doc["tiles_per_second"] = self.tiles_per_second
        return doc

    def to_prometheus(self) -> str:
        labels = f'parameter_hash="{self.parameter_hash}",predicate="{self.predicate}"'
        lines = [
            "# HELP tileindex_tiles_total Rows published (cells included over all countries).",
            "# TYPE tileindex_tiles_total counter",
            f"tileindex_tiles_total{{{labels}}} {self.tiles_total}",
            "# HELP tileindex_tiles_per_second Rows published per second of wall clock.",
            "# TYPE tileindex_tiles_per_second gauge",
            f"tileindex_tiles_per_second{{{labels}}} {self.tiles_per_second:.3f}",
            "# HELP tileindex_units_total Work units (country x row block) masked.",
            "# TYPE tileindex_units_total counter",
            f"tileindex_units_total{{{labels}}} {self.units_total}",
            "# HELP tileindex_mask_cache_hits_total Units whose masks came from the cache.",
            "# TYPE tileindex_mask_cache_hits_total counter",
            f"tileindex_mask_cache_hits_total{{{labels}}} {self.cache_hits}",
        ]
        lines += _histogram(
            "tileindex_unit_seconds", "Seconds to mask one work unit.", self.unit_seconds, labels
        )
        lines += _histogram(
            "tileindex_shard_flush_seconds",
            "Seconds to encode and write one part file of both datasets.",
            self.shard_flush_seconds,
            labels,
        )
        lines += [
            "# HELP tileindex_worker_rss_bytes Peak resident memory of each worker process.",
            "# TYPE tileindex_worker_rss_bytes gauge",
        ]
        for worker, rss in sorted(self.worker_rss_bytes.items()):
            lines.append(f'tileindex_worker_rss_bytes{{{labels},worker="{worker}"}} {rss}')
        return "\n".join(lines) + "\n"


def _histogram(name: str, help_text: str, values: Sequence[float], labels: str) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for bound in UNIT_SECONDS_BUCKETS:
        count = sum(1 for v in values if v <= bound)
        out.append(f'{name}_bucket{{{labels},le="{bound}"}} {count}')
    out.append(f'{name}_bucket{{{labels},le="+Inf"}} {len(values)}')
    out.append(f"{name}_sum{{{labels}}} {sum(values):.6f}")
    out.append(f"{name}_count{{{labels}}} {len(values)}")
    return out


def write_metrics(path: Path, metrics: RunMetrics) -> tuple[Path, Path]:
    """Write ``path`` (Prometheus text format) and ``path.json`` alongside."""
    path = Path(path)
    write_atomic(path, metrics.to_prometheus().encode("utf-8"))
    json_path = path.with_name(path.name + ".json")
    write_json_atomic(json_path, metrics)
    return path, json_path
