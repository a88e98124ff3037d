#!/usr/bin/env python3
"""Where the threads of one process spend their time off the CPU.

Reads `perf script` output of a system-wide `perf record -a -g -e sched:sched_switch` and
the thread ids of the process (comma-separated, first argument). Each interval from a thread's
switch-out to its next switch-in is classed by the state and kernel stack it left the CPU with:

  idle-epoll / parked     waiting for work (epoll_wait, a futex park)
  preempted               runnable but not running: the CPU was given to another task
  preempted-in-fault      the same, at the exit of a page fault (e.g. a copy into a mapping)
  append-mutex            waiting for the store's write lock
  D:<function>            blocked in the kernel (I/O, journal commit, writeback)

and the table shows, per thread name and class, the total time and how many intervals lasted at
least 1/2/5/10/20/50 ms, then the longest examples of every class that is not idle.
"""
import collections
import re
import sys

HEADER = re.compile(r'^\s*(.+?)\s+(-?\d+)(?:/(\d+))?\s+\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch:\s+(.*)$')
LIMITS = (1, 2, 5, 10, 20, 50)
IDLE = ('idle-epoll', 'parked', 'timer-sleep')


def events(lines):
    cur = None
    for line in lines:
        m = HEADER.match(line)
        if m:
            if cur:
                yield cur
            f = dict(re.findall(r'(\w+)=(\S+)', m.group(6)))
            cur = {'ts': float(m.group(5)), 'prev': f.get('prev_pid'), 'next': f.get('next_pid'),
                   'state': f.get('prev_state', ''), 'comm': f.get('prev_comm'), 'stack': []}
        elif cur is not None and line.strip():
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                cur['stack'].append(parts[1].split(' (')[0])
    if cur:
        yield cur


def classify(e):
    s = ' '.join(e['stack'])
    if e['state'].startswith('R'):
        return 'preempted-in-fault' if 'asm_exc_page_fault' in s else 'preempted'
    if 'Inner::append' in s:
        return 'append-mutex'
    if 'epoll_wait' in s:
        return 'idle-epoll'
    if 'nanosleep' in s or 'wait_timeout' in s or 'Condvar' in s:
        return 'timer-sleep'
    if e['state'].startswith('D'):
        for k in ('jbd2_log_wait_commit', 'folio_wait_writeback', 'wbt_wait', 'asm_exc_page_fault',
                  'lock_sock', 'rwsem'):
            if k in s:
                return 'D:' + k
        return 'D:other'
    if 'futex' in s:
        return 'parked'
    return 'S:other'


def main():
    tids = set(sys.argv[1].strip(',').split(','))
    out, total = {}, collections.Counter()
    counts = collections.defaultdict(collections.Counter)
    examples = collections.defaultdict(list)
    for e in events(sys.stdin):
        if e['prev'] in tids:
            out[e['prev']] = e
        if e['next'] in out:
            s = out.pop(e['next'])
            ms = (e['ts'] - s['ts']) * 1000
            k = (s['comm'], classify(s))
            total[k] += ms
            for lim in LIMITS:
                if ms >= lim:
                    counts[k][lim] += 1
            if k[1] not in IDLE:
                examples[k].append((ms, ' <- '.join(s['stack'][:12])))
    print(f"{'thread':18} {'class':26} {'total ms':>10}  intervals >= {'/'.join(map(str, LIMITS))} ms")
    for k in sorted(total, key=lambda k: -total[k]):
        print(f"{k[0]:18} {k[1]:26} {total[k]:10.1f}  {[counts[k][lim] for lim in LIMITS]}")
    for k, ex in sorted(examples.items()):
        print(f"\nlongest {k[1]} of {k[0]}:")
        for ms, stack in sorted(ex, reverse=True)[:3]:
            print(f"  {ms:8.2f} ms  {stack[:400]}")


if __name__ == '__main__':
    main()
