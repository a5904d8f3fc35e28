"""How much of the machine other processes took while a run was measured.

The benchmark shares a small machine with whatever else runs on it; a busy neighbour makes every figure worse.
`Meter` takes the CPU time the whole machine spent (/proc/stat) and subtracts what this benchmark's own process
tree spent (this process, its live descendants — the fake upstream, gunicorn and its workers, wrk — and the
children it has already reaped), so `other_cpus` is the average number of CPUs busy with someone else's work
(steal time, when the hypervisor gives the CPU to another guest, counts as someone else's too).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_HZ = os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _HZ


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, utime + stime + cutime + cstime in seconds) for every live process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            rest = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(rest[1]), sum(int(v) for v in rest[11:15]) / _HZ)
    return table


def _own_cpu() -> float:
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    me = os.getpid()
    total, stack = 0.0, list(children.get(me, []))
    while stack:
        pid = stack.pop()
        total += table[pid][1]
        stack.extend(children.get(pid, []))
    t = os.times()
    return total + t.user + t.system + t.children_user + t.children_system


class Meter:
    """with Meter() as meter: ...; meter.other_cpus"""

    other_cpus: float | None = None

    def __enter__(self) -> Meter:
        self._start = (time.monotonic(), _machine_busy(), _own_cpu())
        return self

    def __exit__(self, *exc) -> None:
        wall0, busy0, own0 = self._start
        wall = time.monotonic() - wall0
        if wall > 0:
            others = (_machine_busy() - busy0) - (_own_cpu() - own0)
            self.other_cpus = round(max(others, 0.0) / wall, 2)
