"""``artesian cluster describe``: the brokers, the controller, and how replicated the
partitions are (what an operator checks before touching a broker)."""

from __future__ import annotations

from typing import Any

from artesian.cli.common import (
    DEFAULT_BOOTSTRAP,
    BootstrapOpt,
    CommandConfigOpt,
    JsonOpt,
    PropsOpt,
    TimeoutOpt,
    client_options,
    make_app,
    out,
    print_json,
    reporting,
    table,
)
from artesian.cli.rebalance import cancel_removal, remove_broker

cluster_app = make_app("Look at the cluster: brokers, controller, replication health.")


@cluster_app.command()
def describe(
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    command_config: CommandConfigOpt = None,
    props: PropsOpt = None,
    timeout: TimeoutOpt = 15.0,
    as_json: JsonOpt = False,
) -> None:
    """Live brokers with the partitions each leads and holds, the controller, and the
    partitions whose ISR is short (under-replicated) or that have no leader (offline)."""
    opts = client_options(bootstrap, command_config, props, timeout)
    with reporting(opts.bootstrap):
        md = opts.admin().list_topics(timeout=opts.timeout)
        brokers: dict[int, dict[str, Any]] = {
            b.id: {"id": b.id, "host": b.host, "port": b.port, "leaders": 0, "replicas": 0}
            for b in md.brokers.values()
        }
        under: list[str] = []
        offline: list[str] = []
        for name, t in sorted(md.topics.items()):
            for p in t.partitions.values():
                where = f"{name}-{p.id}"
                if p.leader < 0:
                    offline.append(where)
                elif len(p.isrs) < len(p.replicas):
                    under.append(where)
                if p.leader in brokers:
                    brokers[p.leader]["leaders"] += 1
                for r in p.replicas:
                    if r in brokers:
                        brokers[r]["replicas"] += 1
        d = {
            "cluster_id": md.cluster_id,
            "controller": md.controller_id,
            "brokers": [brokers[i] for i in sorted(brokers)],
            "under_replicated": under,
            "offline": offline,
        }
        if as_json:
            print_json(d)
            return
        out.print(f"cluster [bold]{md.cluster_id}[/bold], controller: broker {md.controller_id}")
        rows = [
            (b["id"], f"{b['host']}:{b['port']}", b["leaders"], b["replicas"]) for b in d["brokers"]
        ]
        out.print(table(None, ["BROKER", "ADDRESS", "LEADERS", "REPLICAS"], rows))
        out.print(
            f"under-replicated partitions: {len(under)}"
            + (f" ({', '.join(under[:10])}{', ...' if len(under) > 10 else ''})" if under else "")
        )
        out.print(
            f"offline partitions: {len(offline)}"
            + (
                f" ({', '.join(offline[:10])}{', ...' if len(offline) > 10 else ''})"
                if offline
                else ""
            )
        )


# Draining brokers goes through the self-balancer, whose commands live in their own module.
cluster_app.command("remove-broker")(remove_broker)
cluster_app.command("cancel-removal")(cancel_removal)
