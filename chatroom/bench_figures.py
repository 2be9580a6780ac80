"""chatroom-bench's figures: percentiles, the rate shown while it runs, the report, and
whether a run failed its checks."""

import sys
import time

import gevent


def percentile(sorted_values, fraction):
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def progress(stats, seconds, phase):
    """Wait out a phase, showing the delivery rate every second on stderr."""
    end = "\r" if sys.stderr.isatty() else "\n"
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        before = stats.arrived
        gevent.sleep(min(1.0, seconds - elapsed))
        rate = (stats.arrived - before) / max(time.monotonic() - started - elapsed, 1e-9)
        shown = min(time.monotonic() - started, seconds)
        print(f"  {phase} {shown:4.1f}/{seconds:g} s  {rate:10.0f} msgs/s", end=end, file=sys.stderr, flush=True)
    if end == "\r":
        print(file=sys.stderr)


def report(result) -> str:
    lines = [
        f"{result['scenario']}: {result['clients']} clients, window {result['window']}, "
        f"payload {result['payload']} B, {result['seconds']} s",
        f"  delivered   {result['delivered']} messages, {result['msgs_per_s']:.0f} msgs/s",
        f"  latency     p50 {result['p50_us']} us, p99 {result['p99_us']} us, "
        f"p99.9 {result['p999_us']} us, max {result['max_us']} us",
        f"  errors      {result['failures']} failures, {result['disconnects']} disconnects, "
        f"{result['framing_errors']} framing errors",
    ]
    if result["room_size"]:
        lines.insert(2, f"  rooms       of {result['room_size']}: {result['messages_per_s']:.0f} messages/s sent")
    if result["misordered"] is not None:
        lines.append(f"  one order   {result['misordered']} misordered")
    if result["lost"] is not None:
        lines.append(
            f"  verify      {result['lost']} lost, {result['duplicated']} duplicated, {result['reordered']} reordered"
        )
    return "\n".join(lines)


def failed(result) -> bool:
    checks = ["failures", "disconnects", "framing_errors", "lost", "duplicated", "reordered", "misordered"]
    return any(result[name] for name in checks)
