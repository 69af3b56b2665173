"""The sharded-regeneration benchmark's report: the ratio of the medians, its verdict, and a
results page that shows both and every shard. (The measurement itself starts workers: it is
run by hand, not here.)"""
from __future__ import annotations

from bench.regen_shards import markdown, pooled, round_ratios, summary


def shard(index: int, duration_s: float) -> dict:
    return {"shard": index, "cells": 250, "ads": 10_306, "written": 250, "skipped": 0,
            "duration_s": duration_s, "started_after_s": 0.01}


def worker(concurrency: int, run_s: float) -> dict:
    run = {"run_id": "1", "duration_s": run_s, "send_to_done_s": run_s + 0.02, "written": 500,
           "worker_cpu_s": 0.29, "redis_cpu_s": 0.04, "other_processes_cores": 0.9,
           "shards": [shard(0, run_s / concurrency), shard(1, run_s / concurrency)]}
    return {"concurrency": concurrency, "warm_up_s": run_s, "runs": [run], "median_s": run_s,
            "median_send_to_done_s": run_s + 0.02}


def result(one_s: float, two_s: float) -> dict:
    workers = [worker(1, one_s), worker(2, two_s)]
    return {"params": {"ads": 20_000, "cells": 500, "shards": 2, "repeats": 1},
            "machine": {"date": "2026-12-03T18:21:44+00:00", "os_cpu_count": 2},
            "prepared": {"load_s": 0.7, "priors_s": 0.04, "priors_ads": 20_000, "cells": 500},
            "workers": workers, "summary": summary(workers), "priors_stayed": True}


def test_the_ratio_is_one_process_median_over_the_most_processes_median():
    assert summary([worker(2, 5.0), worker(1, 8.0)]) == {
        "ratio": 1.6, "target_ratio": 1.7, "target_met": False, "processes": 2}
    assert summary([worker(1, 8.5), worker(2, 5.0)])["target_met"]


def test_the_page_gives_the_ratio_its_verdict_and_every_shard():
    page = markdown(result(0.33, 0.30))
    assert "**1.10x** as fast with 2 processes" in page and "**NOT met**" in page
    assert "os.cpu_count() = 2" in page and "not during them." in page
    assert page.count("| 10,306 |") == 4           # two shards of one run on each worker
    assert "**met**" in markdown(result(1.0, 0.5))


def test_rounds_are_pooled_by_worker_size_and_each_rounds_ratio_is_kept():
    """Three rounds, the order alternating: the headline ratio is over every run of a size,
    and the page names each round's own ratio next to it."""
    phases = [worker(1, 8.0), worker(2, 5.0), worker(2, 4.0), worker(1, 9.0),
              worker(1, 8.5), worker(2, 5.0)]
    sizes = pooled(phases)
    assert [(w["concurrency"], w["median_s"], len(w["runs"])) for w in sizes] == [
        (1, 8.5, 3), (2, 5.0, 3)]
    assert round_ratios(phases) == [1.6, 2.25, 1.7]
    page = markdown({**result(8.5, 5.0), "workers": sizes,
                     "summary": {**summary(sizes), "round_ratios": round_ratios(phases)}})
    assert "**1.70x** as fast" in page and "Each round alone: 1.60x, 2.25x, 1.70x." in page
