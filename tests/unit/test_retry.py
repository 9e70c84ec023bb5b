"""The one retry policy: capped, jittered exponential backoff."""

from __future__ import annotations

from ingest.retry import RetryPolicy


class TestRetryPolicy:
    def test_grows_exponentially_until_the_cap(self) -> None:
        """Without jitter: initial, doubled each attempt, never above the cap."""
        p = RetryPolicy(initial_s=0.5, cap_s=10, factor=2, jitter=0)
        assert [p.delay(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]

    def test_jitter_takes_off_up_to_its_share(self) -> None:
        """With jitter 0.5 the delay lies between half and all of the base delay."""
        p = RetryPolicy(initial_s=1, cap_s=100, jitter=0.5)
        assert p.delay(3, rand=lambda: 0.0) == 8 and p.delay(3, rand=lambda: 1.0) == 4

    def test_huge_attempt_counts_do_not_overflow(self) -> None:
        """After days of retrying the delay is still the cap."""
        assert RetryPolicy(cap_s=30, jitter=0).delay(10_000) == 30
