"""Quota resolution and accounting, without a broker: Kafka's precedence, a rate per client
name under defaults, a shared rate under a named user, and debt that does not outlive
Kafka's 11 s of windows."""

from __future__ import annotations

from artesian.broker.quota_manager import MAX_THROTTLE_MS, ClientQuotaManager

USER_DEFAULT = (("user", None),)
CLIENT_DEFAULT = (("client-id", None),)


def manager(quotas: dict) -> ClientQuotaManager:  # type: ignore[type-arg]
    m = ClientQuotaManager()
    m.update(quotas)
    return m


def test_most_specific_entity_wins() -> None:
    m = manager(
        {
            USER_DEFAULT: {"producer_byte_rate": 1000.0},
            (("user", "alice"),): {"producer_byte_rate": 100_000.0},
            (("client-id", "app"), ("user", "alice")): {"producer_byte_rate": 10_000.0},
        }
    )
    # alice+app: 10 KB/s, so 30 KB is about 2 s over; alice elsewhere: 100 KB/s, no throttle.
    assert 1900 <= m.record("produce", "User:alice", "app", 30_000) <= 2000
    assert m.record("produce", "User:alice", "other", 30_000) == 0
    assert 1900 <= m.record("produce", "User:bob", "x", 3_000) <= 2000  # the default user
    assert m.record("fetch", "User:bob", "x", 10**9) == 0  # no fetch quota
    assert m.active("produce") and not m.active("fetch")


def test_defaults_count_per_client_and_named_users_share() -> None:
    m = manager({CLIENT_DEFAULT: {"producer_byte_rate": 1000.0}})
    assert 900 <= m.record("produce", "User:ANONYMOUS", "one", 2000) <= 1000
    assert 900 <= m.record("produce", "User:ANONYMOUS", "two", 2000) <= 1000
    shared = manager({(("user", "alice"),): {"producer_byte_rate": 1000.0}})
    assert 900 <= shared.record("produce", "User:alice", "one", 2000) <= 1000
    assert 2900 <= shared.record("produce", "User:alice", "two", 2000) <= 3000


def test_debt_is_capped_at_kafkas_windows_and_quotas_can_change() -> None:
    m = manager({(("user", "alice"),): {"producer_byte_rate": 1000.0}})
    assert m.record("produce", "User:alice", "c", 10**9) == MAX_THROTTLE_MS
    # After the cap, the debt is 11 s of the rate, not 10**9 bytes' worth.
    m.update({(("user", "alice"),): {"producer_byte_rate": 1_000_000.0}})
    assert m.debt_ms("produce", "User:alice", "c") <= 12  # 11,000 bytes at 1 MB/s
    m.update({})
    assert m.debt_ms("produce", "User:alice", "c") == 0
    assert not m.active("produce")


def test_a_fetch_is_counted_only_when_the_quota_takes_it_now() -> None:
    m = manager({CLIENT_DEFAULT: {"consumer_byte_rate": 1000.0}})
    assert m.max_bytes("fetch", "User:ANONYMOUS", "c") == 1000  # a second of the rate
    assert m.max_bytes("produce", "User:ANONYMOUS", "c") is None  # no produce quota
    assert m.record_within("fetch", "User:ANONYMOUS", "c", 800) == 0  # counted
    # 200 bytes left: 800 more are refused, about 600 ms early, and nothing is counted...
    assert 500 <= m.record_within("fetch", "User:ANONYMOUS", "c", 800) <= 600
    assert 500 <= m.record_within("fetch", "User:ANONYMOUS", "c", 800) <= 600
    # ...so a smaller answer still goes.
    assert m.record_within("fetch", "User:ANONYMOUS", "c", 150) == 0
    assert m.debt_ms("fetch", "User:ANONYMOUS", "c") == 0
    # More than the bucket holds waits for a full bucket (never for ever), then goes and
    # leaves debt behind.
    big = manager({CLIENT_DEFAULT: {"consumer_byte_rate": 1000.0}})
    assert big.record_within("fetch", "User:ANONYMOUS", "c", 5000) == 0
    assert 3900 <= big.debt_ms("fetch", "User:ANONYMOUS", "c") <= 4000
    assert 4900 <= big.record_within("fetch", "User:ANONYMOUS", "c", 5000) <= 5000


def test_a_logical_cluster_s_quota_is_one_bucket_for_its_principals() -> None:
    qm = ClientQuotaManager()
    user_quota = {(("user", "alice"),): {"producer_byte_rate": 1_000_000.0}}
    bound = {"User:alice": "lkc-a", "User:carol": "lkc-a"}
    qm.update(user_quota, bound, {"lkc-a": {"producer_byte_rate": 1000.0}})
    assert qm.active("produce") and not qm.active("fetch")
    # Its quota replaces alice's own: 3 s of bytes at 1000 B/s, less one second of credit.
    assert 1900 <= qm.record("produce", "User:alice", "c1", 3000) <= 2000
    # carol, another of its principals, shares the debt; bob, of no logical cluster, does not.
    assert qm.record("produce", "User:carol", "c2", 1) >= 1900
    assert qm.record("produce", "User:bob", "c3", 3000) == 0
    # A kind it has no quota of falls back to Kafka's levels (none here).
    assert qm.record("fetch", "User:alice", "c1", 10**9) == 0
    # Unbound, alice is back on her own quota.
    qm.update(user_quota, {}, {"lkc-a": {"producer_byte_rate": 1000.0}})
    assert qm.record("produce", "User:alice", "c1", 3000) == 0
    # A rate no check stores (infinite) limits nothing rather than failing the request.
    qm.update({}, bound, {"lkc-a": {"producer_byte_rate": float("inf")}})
    assert qm.record("produce", "User:alice", "c1", 3000) == 0
