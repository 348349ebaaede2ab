#!/usr/bin/env python3
"""CPU time per process group while one benchmark command runs (infra/scripts/bench.sh).

    cpu_per_process.py --out FILE.json --flk-pid PID --stack DIR [--start-after TEXT] -- COMMAND...

Runs COMMAND (the load generator, `flk bench`), reads /proc before and after, and writes the CPU
seconds (user + system) each group spent meanwhile. With --start-after, "before" is the moment
COMMAND writes a line containing TEXT to its stderr (`flk bench` announces the records it prepared
before it starts sending: building and signing them is not what a record costs the service):

- broker: the Kafka broker of region a (`DIR/kafka/kafka.pid`);
- postgres: the postmaster, every backend and helper it started (backends that ended meanwhile
  are counted through the postmaster's reaped-children time);
- redis: region a's Redis nodes (`DIR/redis/<port>/redis.pid`, the ports of FLK_REDIS_URLS);
- flk: the `flk serve` process (every thread);
- loadgen: COMMAND itself (its own rusage at the end, less what it had used at "before");
- other: everything else the machine did (from /proc/stat), the stack's idle services and this
  script included.

CPU time, unlike wall time, is what a record costs whatever else runs on the machine, so runs on a
noisy machine stay comparable. The exit status is COMMAND's.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read_pid(path):
    try:
        with open(path) as handle:
            return int(handle.readline().strip())
    except (OSError, ValueError):
        return None


def proc_stat(pid):
    """(ppid, own cpu ticks, reaped children's cpu ticks) of a live process, else None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return ppid, utime + stime, cutime + cstime


def all_processes():
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    return table


def machine_busy_ticks():
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: everything but idle and iowait.
    return sum(fields[:3]) + sum(fields[5:8])


def groups(stack, flk_pid, redis_ports):
    """Group name -> root pids (and whether to add their descendants)."""
    postmaster = read_pid(os.path.join(stack, "postgres", "data", "postmaster.pid"))
    return {
        "broker": ([read_pid(os.path.join(stack, "kafka", "kafka.pid"))], False),
        "postgres": ([postmaster], True),
        "redis": (
            [read_pid(os.path.join(stack, "redis", port, "redis.pid")) for port in redis_ports],
            False,
        ),
        "flk": ([flk_pid], False),
    }


def group_ticks(table, roots, descendants):
    """Own ticks of the roots (and of their descendants), plus the roots' reaped children."""
    members = {pid for pid in roots if pid in table}
    if descendants:
        grew = True
        while grew:
            grew = False
            for pid, (ppid, _, _) in table.items():
                if ppid in members and pid not in members:
                    members.add(pid)
                    grew = True
    own = sum(table[pid][1] for pid in members)
    reaped = sum(table[pid][2] for pid in roots if pid in table)
    return own + reaped


def snapshot(group_table):
    table = all_processes()
    return {name: group_ticks(table, roots, desc) for name, (roots, desc) in group_table.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--flk-pid", type=int, required=True)
    parser.add_argument("--stack", required=True, help="the stack's state directory (.local/stack)")
    parser.add_argument("--start-after", help="start measuring when COMMAND's stderr shows this")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    redis_ports = [
        url.rsplit(":", 1)[-1].strip("/")
        for url in os.environ.get("FLK_REDIS_URLS", "").split(",")
        if url
    ]
    group_table = groups(args.stack, args.flk_pid, redis_ports)
    missing = [name for name, (roots, _) in group_table.items() if not any(roots)]
    if missing:
        print(f"cpu_per_process: no pid for {', '.join(missing)} under {args.stack}", file=sys.stderr)

    marks = {"child_ticks": 0}

    def mark_before():
        marks["groups"], marks["busy"] = snapshot(group_table), machine_busy_ticks()
        marks["started"] = time.monotonic()

    mark_before()
    if args.start_after is None:
        child, reader = subprocess.Popen(command), None
    else:
        child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")

        def pass_stderr():
            seen = False
            for line in child.stderr:
                sys.stderr.write(line)
                sys.stderr.flush()
                if not seen and args.start_after in line:
                    seen = True
                    stat = proc_stat(child.pid)
                    marks["child_ticks"] = stat[1] + stat[2] if stat else 0
                    mark_before()
            if not seen:
                print(f"cpu_per_process: never saw {args.start_after!r}; measured the whole run",
                      file=sys.stderr)

        reader = threading.Thread(target=pass_stderr, daemon=True)
        reader.start()
    _, status, usage = os.wait4(child.pid, 0)
    if reader is not None:
        reader.join(timeout=5)
    after, busy_after = snapshot(group_table), machine_busy_ticks()
    wall = time.monotonic() - marks["started"]

    before = marks["groups"]
    seconds = {name: (after[name] - before[name]) / CLOCK_TICKS for name in group_table}
    seconds["loadgen"] = usage.ru_utime + usage.ru_stime - marks["child_ticks"] / CLOCK_TICKS
    busy = (busy_after - marks["busy"]) / CLOCK_TICKS
    seconds["other"] = max(0.0, busy - sum(seconds.values()))
    with open(args.out, "w") as handle:
        json.dump({"wall_s": wall, "machine_busy_s": busy, "cpu_s": seconds}, handle, indent=1)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
