"""``artesian transactions``: list and describe transactions (like kafka-transactions.sh).

librdkafka's admin API has neither DescribeTransactions nor ListTransactions, so these speak
the protocol through ``wire.WireClient``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    CommandConfigOpt,
    JsonOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    fail,
    make_app,
    out,
    print_json,
    reporting,
    table,
)
from artesian.cli.wire import WireClient, coordinator_of

transactions_app = make_app("List and describe transactions (like kafka-transactions.sh).")

_LIST_TRANSACTIONS, _DESCRIBE_TRANSACTIONS = 66, 65
_TRANSACTION_KEY = 1


@transactions_app.command("list")
def list_(
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state", help="Only these states (Ongoing, PrepareCommit, ...). Repeatable."
        ),
    ] = None,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Transactional ids the broker coordinates, with their producer ids and states."""
    from kio.schema.errors import ErrorCode  # here: the schemas are slow to import

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap), WireClient.for_options(opts) as client:
        resp = client.request(
            _LIST_TRANSACTIONS,
            1,
            state_filters=tuple(state or ()),
            producer_id_filters=(),
            duration_filter=-1,
        )
        if resp.error_code != ErrorCode.none:
            fail(f"ListTransactions failed: {resp.error_code.name}")
        rows = sorted(
            (t.transactional_id, int(t.producer_id), t.transaction_state)
            for t in resp.transaction_states
        )
        if as_json:
            print_json([{"transactional_id": i, "producer_id": p, "state": s} for i, p, s in rows])
        elif rows:
            out.print(table(None, ["TRANSACTIONAL ID", "PRODUCER ID", "STATE"], rows))
        else:
            out.print("No transactions.")


@transactions_app.command()
def describe(
    transactional_id: Annotated[str, typer.Argument(help="The transactional.id.")],
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """State, producer id and epoch, timeout, start time and partitions of one transaction."""
    from kio.schema.errors import ErrorCode  # here: the schemas are slow to import

    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        coordinator = coordinator_of(opts, _TRANSACTION_KEY, transactional_id)
        with WireClient.for_options(opts, coordinator) as client:
            resp = client.request(_DESCRIBE_TRANSACTIONS, 0, transactional_ids=(transactional_id,))
        (t,) = resp.transaction_states
        if t.error_code == ErrorCode.transactional_id_not_found:
            fail(
                f"no transaction with transactional.id {transactional_id!r}",
                "List them with `artesian transactions list`.",
            )
        if t.error_code != ErrorCode.none:
            fail(f"DescribeTransactions failed: {t.error_code.name}")
        d = _describe(t)
        if as_json:
            print_json(d)
            return
        out.print(
            table(
                None,
                ["TRANSACTIONAL ID", "PRODUCER ID", "EPOCH", "STATE", "TIMEOUT MS", "STARTED"],
                [
                    (
                        d["transactional_id"],
                        d["producer_id"],
                        d["producer_epoch"],
                        d["state"],
                        d["timeout_ms"],
                        d["start_time"] or "-",
                    )
                ],
            )
        )
        if d["partitions"]:
            out.print(table("Partitions", ["TOPIC", "PARTITION"], d["partitions"]))


def _describe(t: Any) -> dict[str, Any]:
    start = t.transaction_start_time
    return {
        "transactional_id": t.transactional_id,
        "producer_id": int(t.producer_id),
        "producer_epoch": int(t.producer_epoch),
        "state": t.transaction_state,
        "timeout_ms": int(t.transaction_timeout.total_seconds() * 1000),
        # -1 on the wire (no transaction open) reads as the epoch or earlier.
        "start_time": start.isoformat() if start is not None and start.year > 1970 else None,
        "partitions": sorted((d.topic, int(p)) for d in t.topics for p in d.partitions),
    }
