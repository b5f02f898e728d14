"""Benchmark scenarios: `uv run python -m bench.run {smoke,default,full,idle,storm,calibrate}`
(and parts: yardstick, big-room, fanout, fanout-typing, fanout-plain, fanout-cluster).

smoke     ~30 s, for CI: exits non-zero only if the run failed (lost/duplicate/out-of-order
          messages at a low rate, sockets that did not connect, no deliveries at all).
default   about 7 minutes: the yardstick (below), the sidebar fan-out steps (FANOUT), idle
          memory per connection with and without permessage-deflate; prints tables.
yardstick issue 17's pairs: the app and the trivial broadcast server (bench/calibrate.py)
          at the same steps, 1k clients / 10 rooms / 2 workers and 500 / 10 / 2 up to 50k
          deliveries/s, side by side (CPU per delivery, p50, p99).
big-room  one room of 10,000 members on 2 workers at 1 and 2 messages/s, beside the trivial
          server (also in `full`).
full      the matrix N in {100, 1k, 5k, 10k} x M in {1, 10, 100} x W in {1, 2} (each cell
          bounded in time), the big room, 10k idle sockets, a 5k-client reconnect storm.
          Long; --cells picks a part of it, e.g. --cells N1000-M10-W2,N10000-M1-W1.

A py-spy profile of one worker (if py-spy is on PATH) is summed up in the tables and drawn as
a flame graph (bench/flame.py) beside the raw stacks.

Each run writes bench/results/<time>-<scenario>/result.json and chart.png, and
bench/results/SUMMARY.md; --publish also copies the summary to bench/REPORT.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.loadgen import Cell

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

DELIVERY_STEPS = [2_000, 5_000, 10_000, 20_000, 30_000]  # offered deliveries/s in `full`
MAX_MSGS_PER_S = 2_000  # a cap on offered messages/s when rooms are tiny


def calibration_cell(rates: list[float], step_seconds: float) -> Cell:
    """The generator against the trivial broadcast server (bench/calibrate.py)."""
    return Cell(
        clients=1000,
        rooms=10,
        workers=1,
        rates=rates,
        step_seconds=step_seconds,
        max_seconds=120,
    )


async def calibrate(cell: Cell, out: Path) -> dict[str, Any]:
    return {**await loadgen.run_load(cell, out / "echo", target="echo"), "target": "echo"}


def matrix_cell(n: int, m: int, w: int) -> Cell:
    per_room = n / m
    rates = sorted({round(min(MAX_MSGS_PER_S, max(1.0, d / per_room)), 1) for d in DELIVERY_STEPS})
    return Cell(
        clients=n,
        rooms=m,
        workers=w,
        rates=[1.0, *rates] if rates[0] > 1 else rates,
        step_seconds=5.0,
        senders_per_room=2 if m <= 10 else 1,
        sockets_per_user=100,
        processes=2,
        max_seconds=300,
    )


# Every socket's person is a member of all 10 rooms and views one (in 10 tabs): the sidebars
# carry live unread counts of the other nine (issue 13's condition for this scenario).
FANOUT = Cell(
    clients=1000,
    rooms=10,
    workers=2,
    rates=[10, 50, 100, 200, 300],
    step_seconds=6.0,
    profile_step=3,
    sockets_per_user=10,
    join_all_rooms=True,
)


# Issue 17's yardsticks: each runs beside the trivial server (bench/calibrate.py) with the same
# clients, rooms and rates, and the summary sets the two side by side. Every socket is a
# member of its one room (no sidebar counts of other rooms: the trivial server has none).
PLAIN = Cell(
    clients=1000,
    rooms=10,
    workers=2,
    rates=[10, 50, 100, 200, 300],
    step_seconds=5.0,
    profile_step=1,
)
BUSY = Cell(clients=500, rooms=10, workers=2, rates=[100, 400, 1000], step_seconds=5.0)
# One room of 10,000 members at 1 message a second (bench-full).
BIG_ROOM = Cell(
    clients=10_000,
    rooms=1,
    workers=2,
    rates=[1.0, 2.0],
    step_seconds=10.0,
    senders_per_room=1,
    # 200 people with 50 tabs each. Setting the room up is slow (about 15 sockets a second
    # here): each new person is announced to everyone there, each new socket gets the list
    # of who is online, and a person's tabs tell each other when one opens the room.
    sockets_per_user=50,
    max_seconds=900,
)


async def paired(cell: Cell, out: Path) -> list[dict[str, Any]]:
    """The trivial server's run, then the app's, at the same clients, rooms and rates."""
    trivial = await calibrate(dataclasses.replace(cell, workers=1, profile_step=None), out)
    trivial["cell"] = cell.name
    return [trivial, await loadgen.run_load(cell, out / cell.name)]


async def idle(clients: int, compression: bool, out: Path) -> dict[str, Any]:
    """run_idle, or what stopped it: one failed run must not lose the scenario's others."""
    try:
        return await loadgen.run_idle(clients, compression, out)
    except Exception as error:
        return {"clients": clients, "compression": compression, "failed": repr(error)}


async def scenario(name: str, cells_filter: set[str] | None, out: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"scenario": name, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    loads: list[dict[str, Any]] = []
    result["loads"] = loads
    if name == "smoke":
        cell = Cell(
            clients=100,
            rooms=10,
            workers=1,
            rates=[10, 50],
            step_seconds=4.0,
            processes=1,
            max_seconds=60,
        )
        loads += await paired(cell, out / "smoke")  # the trivial server's path is used too
    elif name == "calibrate":
        loads.append(await calibrate(calibration_cell([10, 50, 100, 200, 300, 400], 4.0), out))
    elif name == "default":
        loads += await paired(PLAIN, out / "plain")
        loads += await paired(BUSY, out / "busy")
        loads.append(await loadgen.run_load(FANOUT, out / FANOUT.name))
        result["idle"] = [
            await idle(1500, True, out / "idle-deflate"),
            await idle(1500, False, out / "idle-plain"),
        ]
    elif name == "yardstick":
        loads += await paired(PLAIN, out / "plain")
        loads += await paired(BUSY, out / "busy")
    elif name == "big-room":
        loads += await paired(BIG_ROOM, out / "big-room")
    elif name == "fanout":
        loads.append(await loadgen.run_load(FANOUT, out / FANOUT.name))
    elif name == "fanout-cluster":
        # Issue 16: the same load on a cluster of 3 primaries (same machine).
        cell = dataclasses.replace(FANOUT, cluster=True)
        loads.append(await loadgen.run_load(cell, out / cell.name))
    elif name in ("fanout-typing", "fanout-typing-busy"):
        # Issue 14: 10 % of sockets type (a frame every 3 s); reactions "now and then", 2/s
        # over the 10 rooms (busy: 10/s, a room's 100 members react every second).
        per_second = 10 if name.endswith("busy") else 2
        cell = dataclasses.replace(FANOUT, typing_share=0.1, reactions_per_s=per_second)
        loads.append(await loadgen.run_load(cell, out / (cell.name + "-typing")))
    elif name == "fanout-plain":
        cell = dataclasses.replace(FANOUT, compression=False)
        loads.append(await loadgen.run_load(cell, out / (cell.name + "-plain")))
    elif name == "idle":
        result["idle"] = [
            await idle(10_000, True, out / "idle-deflate"),
            await idle(10_000, False, out / "idle-plain"),
        ]
    elif name == "storm":
        result["storm"] = [
            await loadgen.run_storm(5000, 10, 2, 20, out / "storm"),
            await loadgen.run_storm(5000, 10, 2, 20, out / "storm-pool", pool_size=2000),
        ]
    elif name == "full":
        loads.append(await calibrate(calibration_cell([100, 200, 300, 400], 4.0), out))
        if not cells_filter:
            loads += await paired(BIG_ROOM, out / "big-room")
        for n in (100, 1000, 5000, 10_000):
            for m in (1, 10, 100):
                for w in (1, 2):
                    cell = matrix_cell(n, m, w)
                    if cells_filter and cell.name not in cells_filter:
                        continue
                    print(f"cell {cell.name}: rates {cell.rates}", flush=True)
                    try:
                        loads.append(await loadgen.run_load(cell, out / cell.name))
                    except Exception as error:  # one cell failing must not lose the others
                        loads.append({"cell": cell.name, "failed": repr(error), "steps": []})
                    write(result, out)
        if not cells_filter:
            result["idle"] = [
                await idle(10_000, True, out / "idle-deflate"),
                await idle(10_000, False, out / "idle-plain"),
            ]
            result["storm"] = [await loadgen.run_storm(5000, 10, 2, 20, out / "storm")]
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return result


def write(result: dict[str, Any], out: Path) -> None:
    (out / "result.json").write_text(json.dumps(result, indent=1))


def chart(result: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (uv pip install matplotlib)", file=sys.stderr)
        return False
    loads = [lo for lo in result.get("loads", []) if lo.get("steps")]
    if not loads:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    top = 0
    for load in loads:
        label = load["cell"] + (" (echo calibration)" if load.get("target") == "echo" else "")
        offered = [s["offered_deliveries_per_s"] for s in load["steps"]]
        top = max(top, *offered)
        left.plot(offered, [s["deliveries_per_s"] for s in load["steps"]], "o-", label=label)
        for key, style in (("p50_ms", "o-"), ("p99_ms", "s--")):
            right.plot(offered, [s[key] for s in load["steps"]], style, label=f"{label} {key[:-3]}")
    left.plot([0, top], [0, top], ":", color="grey", label="offered = delivered")
    left.set(
        xlabel="offered deliveries/s",
        ylabel="delivered deliveries/s",
        title="Throughput vs offered rate",
    )
    right.set(
        xlabel="offered deliveries/s",
        ylabel="latency, ms (log)",
        yscale="log",
        title="End-to-end latency percentiles",
    )
    right.axhline(100, color="red", linewidth=0.8, linestyle=":")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.suptitle(f"bench/run.py {result['scenario']} — {result['started']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def summary(result: dict[str, Any], out: Path) -> str:
    lines = [
        f"# Benchmark: `{result['scenario']}` ({result['started']} to {result.get('finished')})",
        "",
    ]
    lines.append(f"Raw data: `{out.relative_to(HERE.parent)}/result.json`; chart: `chart.png`.")
    lines.append("")
    lines += matrix(result)
    lines += beside_trivial(result)
    for load in result.get("loads", []):
        title = load["cell"] + (
            " — echo calibration server" if load.get("target") == "echo" else ""
        )
        lines += [f"## {title}", ""]
        if load.get("failed"):
            lines += [f"Failed: `{load['failed']}`", ""]
            continue
        lines.append(
            f"{load['connected']:,} sockets connected, {load['senders']} senders, "
            f"{load['step_seconds']:.0f} s per step, permessage-deflate "
            f"{'offered' if load['compression'] else 'off'}; setup {load.get('setup_seconds')} s; "
            f"max sustained **{load['max_sustained_deliveries_per_s']:,} deliveries/s**."
        )
        lines.append("")
        head = (
            "| offered msg/s | offered deliv/s | delivered/s | not stored | lost | dups | ooo | p50 ms "
            "| p99 ms | p99.9 ms | max ms | server cores | server µs/deliv | redis cores "
            "| EVAL/XADD/(S)PUBLISH per msg | loadgen cores | ok |"
        )
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for s in load["steps"]:
            per = s.get("redis_calls_per_msg", {})
            calls = (
                "/".join(
                    fmt(per.get(k, 0))
                    for k in ("eval", "xadd", "spublish" if "spublish" in per else "publish")
                )
                if per
                else "—"
            )
            lines.append(
                "| "
                + " | ".join(
                    fmt(x)
                    for x in (
                        s["offered_msgs_per_s"],
                        s["offered_deliveries_per_s"],
                        s["deliveries_per_s"],
                        s.get("not_stored"),
                        s["lost"],
                        s["dups"],
                        s["out_of_order"],
                        s["p50_ms"],
                        s["p99_ms"],
                        s["p999_ms"],
                        s["max_ms"],
                        s.get("server_cores"),
                        s.get("server_us_per_delivery"),
                        s.get("redis_cores"),
                    )
                )
                + f" | {calls} | {fmt(s['loadgen_cores'])} | {'yes' if s['sustained'] else 'no'} |"
            )
        if any(s.get("redis_node_cores") for s in load["steps"]):
            lines += ["", "Redis cores per cluster node (by port), per step:", ""]
            for s in load["steps"]:
                nodes = s.get("redis_node_cores", {})
                shares = ", ".join(f"{port}: {fmt(cores)}" for port, cores in nodes.items())
                lines.append(f"- {fmt(s['offered_msgs_per_s'])} msg/s: {shares}")
        last = load["steps"][-1] if load["steps"] else {}
        if last.get("rss_mb"):
            lines.append("")
            lines.append(
                f"RSS at the end (MB, per server process): {last['rss_mb']}; Redis "
                f"{last['redis_rss_mb']} MB."
            )
        if load.get("errors") or load.get("closes"):
            lines.append(
                f"Errors: {load.get('errors')}; close codes: {load.get('closes')}; "
                f"reconnects: {load.get('reconnects')}."
            )
        if load.get("profile", {}).get("self"):
            lines += [
                "",
                f"py-spy of one worker (pid {load['profile']['pid']}) during step "
                f"{load['profile'].get('step', 0) + 1}, top self-time functions:",
                "",
            ]
            lines += [f"- {share:.1%} {frame}" for frame, share in load["profile"]["self"][:12]]
            if load["profile"].get("flame"):
                lines += ["", f"Flame graph: `{load['profile']['flame']}`."]
        lines.append("")
    if result.get("idle"):
        lines += [
            "## Idle signed-in sockets on one worker",
            "",
            "| sockets | permessage-deflate offered | connected | connect s | worker RSS before MB "
            "| idle MB | KB per connection | after close MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i in result["idle"]:
            if i.get("failed"):
                lines.append(
                    f"| {i['clients']:,} | {'yes' if i['compression'] else 'no'} | "
                    f"failed: {i['failed']} | | | | | |"
                )
                continue
            lines.append(
                f"| {i['clients']:,} | {'yes' if i['compression'] else 'no'} | {i['connected']:,} | "
                f"{i['connect_seconds']} | {i['worker_rss_before_mb']} | {i['worker_rss_idle_mb']} | "
                f"**{i['kb_per_connection']}** | {i['worker_rss_after_close_mb']} |"
            )
        lines.append("")
    if result.get("storm"):
        lines += [
            "## Reconnect storm",
            "",
            "| clients | rooms | workers | Redis pool | missed/room "
            "| backfilled | all done s | p50 s | p99 s | server CPU s | connect failures | errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in result["storm"]:
            lines.append(
                f"| {s['clients']:,} | {s['rooms']} | {s['workers']} | {s['redis_url_note']} | "
                f"{s['missed_per_room']} | "
                f"{s['backfilled']:,} | {fmt(s['all_backfilled_seconds'])} | {s['p50_seconds']} | "
                f"{s['p99_seconds']} | {s['server_cpu_seconds']} | {s['connect_failures']} | "
                f"{s['errors']} |"
            )
        lines.append("")
    return "\n".join(lines)


def beside_trivial(result: dict[str, Any]) -> list[str]:
    """Each app run next to the trivial server's run of the same cell (issue 17's yardstick)."""
    loads = result.get("loads", [])
    trivial = {lo["cell"]: lo for lo in loads if lo.get("target") == "echo" and lo.get("steps")}
    lines: list[str] = []
    for load in loads:
        echo = trivial.get(load["cell"])
        if load.get("target") == "echo" or echo is None or not load.get("steps"):
            continue
        lines += [
            f"## {load['cell']}: the app beside the trivial server",
            "",
            "| offered deliv/s | delivered/s app / trivial | server µs per delivery app / trivial "
            "| ratio | p50 ms app / trivial | p99 ms app / trivial | max ms app | lost / dups / ooo |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for ours, theirs in zip(load["steps"], echo["steps"], strict=False):
            us, base = ours.get("server_us_per_delivery"), theirs.get("server_us_per_delivery")
            ratio = f"{us / base:.2f}x" if us and base else "—"
            lines.append(
                f"| {fmt(ours['offered_deliveries_per_s'])} "
                f"| {fmt(ours['deliveries_per_s'])} / {fmt(theirs['deliveries_per_s'])} "
                f"| {fmt(us)} / {fmt(base)} | {ratio} "
                f"| {fmt(ours['p50_ms'])} / {fmt(theirs['p50_ms'])} "
                f"| {fmt(ours['p99_ms'])} / {fmt(theirs['p99_ms'])} | {fmt(ours['max_ms'])} "
                f"| {ours['lost']} / {ours['dups']} / {ours['out_of_order']} |"
            )
        lines.append("")
    return lines


def matrix(result: dict[str, Any]) -> list[str]:
    """One row per app cell: the best sustained step and the step nearest 10 % of it."""
    loads = [lo for lo in result.get("loads", []) if lo.get("target") != "echo"]
    if len(loads) < 2:
        return []
    lines = [
        "## Matrix: one row per cell",
        "",
        "Best = the highest step sustained (everything sent was stored, nothing stored was lost,"
        " duplicated or reordered, p99 ≤ 100 ms, offered rate reached); light = the step nearest"
        " 10 % of that. Lost = stored in the room's stream but never delivered to a member;"
        " not stored = sent by the generator but not yet taken in by an overloaded server when"
        " the run ended (draining stops after 5 s without a delivery, or 60 s).",
        "",
        "| N clients | M rooms | W workers | best deliv/s | p50 / p99 ms at best "
        "| µs/deliv at best | light deliv/s | p50 / p99 ms at light | lost / dups / ooo, all steps "
        "| not stored by the end, all steps | EVAL/XADD/PUBLISH per msg at best |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for load in loads:
        head = f"| {load['clients']:,} | {load['rooms']} | {load['workers']} "
        if load.get("failed"):
            lines.append(head + f"| failed: {load['failed']} |" + " |" * 7)
            continue
        steps = load["steps"]
        sustained = [s for s in steps if s["sustained"]]
        best = max(sustained, key=lambda s: s["deliveries_per_s"]) if sustained else None
        light = (
            min(sustained, key=lambda s: abs(s["deliveries_per_s"] - best["deliveries_per_s"] / 10))
            if best
            else None
        )
        bad = "/".join(fmt(sum(s[k] for s in steps)) for k in ("lost", "dups", "out_of_order"))
        bad += f" | {fmt(sum(s.get('not_stored') or 0 for s in steps))}"
        per = (best or {}).get("redis_calls_per_msg", {})
        calls = "/".join(fmt(per.get(k, 0)) for k in ("eval", "xadd", "publish")) if per else "—"

        def at(step: dict[str, Any] | None) -> str:
            if step is None:
                return "— | —"
            return (
                f"{fmt(step['deliveries_per_s'])} | {fmt(step['p50_ms'])} / {fmt(step['p99_ms'])}"
            )

        lines.append(
            head
            + f"| {at(best)} | {fmt((best or {}).get('server_us_per_delivery'))} | {at(light)} "
            + f"| {bad} | {calls} |"
        )
    lines.append("")
    return lines


def failures(result: dict[str, Any]) -> list[str]:
    """Real errors: the run did not complete, or the lowest rate lost/duplicated/reordered."""
    found = []
    for load in result.get("loads", []):
        if load.get("failed"):
            found.append(f"{load['cell']}: {load['failed']}")
            continue
        first = load["steps"][0]
        if load["connect_failures"]:
            found.append(f"{load['cell']}: {load['connect_failures']} sockets did not connect")
        if not first["delivered"]:
            found.append(f"{load['cell']}: nothing delivered")
        # The trivial server's broadcast() skips a socket whose buffer is full: its losses
        # are a yardstick's limit, not a failure of the run.
        if load.get("target") != "echo" and (
            first["lost"] or first["dups"] or first["out_of_order"]
        ):
            found.append(
                f"{load['cell']}: lowest rate lost {first['lost']}, dups "
                f"{first['dups']}, out of order {first['out_of_order']}"
            )
    found += [
        f"idle {i['clients']}: {i['failed']}" for i in result.get("idle", []) if i.get("failed")
    ]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "scenario",
        choices=[
            "smoke",
            "default",
            "full",
            "idle",
            "storm",
            "calibrate",
            "fanout",
            "fanout-typing",
            "fanout-typing-busy",
            "fanout-plain",
            "fanout-cluster",
            "yardstick",
            "big-room",
        ],
    )
    parser.add_argument("--cells", help="comma-separated cell names for `full`")
    parser.add_argument("--publish", action="store_true", help="copy SUMMARY.md to bench/REPORT.md")
    args = parser.parse_args(argv)
    out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.scenario}"
    out.mkdir(parents=True, exist_ok=True)
    cells = set(args.cells.split(",")) if args.cells else None
    result = asyncio.run(scenario(args.scenario, cells, out))
    write(result, out)
    chart(result, out / "chart.png")
    text = summary(result, out)
    (out / "SUMMARY.md").write_text(text)
    (RESULTS / "SUMMARY.md").write_text(text)
    if args.publish:
        shutil.copy(RESULTS / "SUMMARY.md", HERE / "REPORT.md")
    print(text)
    problems = failures(result)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
