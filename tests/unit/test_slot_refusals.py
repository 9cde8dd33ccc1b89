"""Which lost calls a moving slot refused (Redis answered at once and ran nothing), as against
those lost to a node that did not answer: only the first let a batch go of its slot."""

from __future__ import annotations

import pytest
from redis import exceptions

from stores.redis import refused_by_a_moving_slot


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"), True),
        (exceptions.ClusterError("TTL exhausted."), True),
        (exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"), False),
        (exceptions.ConnectionError("Connection refused"), False),
        (exceptions.TimeoutError("Timeout reading"), False),
        (exceptions.MaxConnectionsError("Too many connections"), False),
        (TimeoutError(), False),
    ],
)
def test_only_a_moving_slots_refusals_count(error: BaseException, refused: bool) -> None:
    assert refused_by_a_moving_slot(error) is refused
