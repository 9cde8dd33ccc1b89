"""The request path's counts (api/metrics.py, RequestCounts): plain numbers that must expose the
same series prometheus_client's own Counter and Histogram would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import PLACEMENT_BUCKETS_S, Metrics, RequestCounts
from engine.errors import Overloaded


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    families = list(text_string_to_metric_families(text))
    # Scraped series carry no timestamp of their own: Prometheus stamps them at scrape time.
    assert all(sample.timestamp is None for family in families for sample in family.samples)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_placement_buckets_match_a_prometheus_histogram_at_and_between_the_bounds() -> None:
    values = [0.0, *PLACEMENT_BUCKETS_S, *(b * 1.5 for b in PLACEMENT_BUCKETS_S), 7.0]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counts = RequestCounts()
    ours.register(counts)
    reference = Histogram("placement_seconds", "h", buckets=PLACEMENT_BUCKETS_S, registry=theirs)
    for seconds in values:
        counts.observe_placement(seconds)
        reference.observe(seconds)
    placement = {k: v for k, v in _samples(ours).items() if k[0].startswith("placement_seconds")}
    assert placement == _samples(theirs)


def test_outcomes_and_status_classes_are_counted_under_their_labels() -> None:
    metrics = Metrics()
    metrics.order_placed(replayed=False, placement_s=0.001)
    metrics.order_placed(replayed=True, placement_s=0.001)
    assert metrics.order_failed(Overloaded(0.5), placement_s=0.5) == "overloaded"
    assert metrics.order_failed(RuntimeError("bug"), placement_s=0.5) == "error"
    for status in (201, 201, 409, 503, 99, 600):  # the last two are no status class: not counted
        metrics.count_status(status)
    samples = _samples(metrics.registry)
    for outcome, count in {"confirmed": 1, "replayed": 1, "overloaded": 1, "error": 1}.items():
        assert samples[("orders_total", (("outcome", outcome),))] == count
    assert samples[("orders_total", (("outcome", "out_of_stock"),))] == 0
    assert samples[("placement_seconds_count", ())] == 4
    assert samples[("placement_seconds_sum", ())] == 1.002
    by_class = {
        labels[0][1]: v for (name, labels), v in samples.items() if name == "http_responses_total"
    }
    assert by_class == {"1xx": 0, "2xx": 2, "3xx": 0, "4xx": 1, "5xx": 1}
