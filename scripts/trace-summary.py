#!/usr/bin/env python3
"""Read a kernel timeline (GPTQTOOL_TRACE, `scripts/gpu.sh trace`) and print
where one decode step's time goes, kernel by kernel.

A step is the launches up to and including a sample_rows (or argmax_rows)
launch; the step printed is the median (by length) of the steps whose every
layer has its four products traced, none of their launches partial (each SM
holds GPTQTOOL_TRACE_RECORDS/256 of a module's blocks; past that, its blocks
are not recorded and the launches then running are marked partial).

For each launch, times in µs from the step's start: when its first block
started, when the previous kernel ended, when its blocks' wait for it
returned (earliest / median), when staging and the main loop were done
(median; paged attention: when its loop was done and when its combine's
barrier was passed; with GPTQTOOL_TRACE_AT=1 a product's loop is done once
all of a block's warps are), when its last block ended; then
  gap   = median wait return - previous kernel's end (the dependency's cost),
  body  = end - median wait return (the kernel's own critical path).
Then the step's totals by kernel: the time from the previous kernel's end
to this one's end, summed over the step's launches of that kernel. Before
the launches, the medians over consecutive steps of the time from the
head's end to the draw's start, of the draw, and from the draw's end to the
next step's first traced kernel.

--sm adds, under each launch, its SMs counted by how many of its blocks
each ran and the latest block end on the SMs of each count (µs from the
launch's first block start).

--gpc prints the GPCs the clusters showed (SMs grouped by the clusters that
ran on them) and adds, under each launch, for each GPC its SMs, the
launch's blocks there / the SMs they ran on, and their latest end (µs from
the launch's first block start).

--sm-spread KIND (a trace made with GPTQTOOL_TRACE_SM=KIND, e.g. fmlp)
prints instead how late each SM's main loop ends in that kind's launches
(µs after the launch's median SM): per SM the median over the launches and
how often it is among the latest tenth, the SMs from the latest; then per
GPC; then whether lateness is a property of the SM: the correlation of
each SM's median lateness over the first and the second half of the
launches.

--layers adds, after the step's totals, each kernel's medians over its
launches in the median step (its layers), µs: the wait after the previous
kernel's end (median wait return), staging (to the staged mark), loop (to
the median block's loop end), after (to the kernel's end), and the
previous kernel's end to this one's end; their sum over the kernels is a
layer.

--tails prints instead, for each product (a qmma launch's grid), the
medians over its launches of the times from the launch's first block
start (µs): the blocks' wait for the previous kernel (first / median),
staging done (median), the main loop done (first / median / last block),
the kernel's end; then the two parts of its tail, the last loop's end
less the median's (the blocks' spread) and the end less the last loop's
(the splits' sums, the epilogue, the exit).

Usage: scripts/trace-summary.py TRACE.json[.gz] [--all] [--sm] [--gpc] [--layers] [--sm-spread KIND] [--tails]
"""
import gzip
import json
import sys


def load(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rt") as f:
        return json.load(f)


def name(l):
    g = l["grid"]
    return f'{l["kind"]}[{g[0]}x{g[1]}]'


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def sm_spread(t, kind):
    """The --sm-spread report (see the module's doc)."""
    late = {}  # SM -> lateness in each launch that ran on it
    when = {}  # SM -> those launches' indices
    tail = {}  # SM -> launches in which it is among the latest tenth
    ls = [l for l in t["launches"] if l["kind"] == kind and l.get("sm_marks_us") and not l.get("partial")]
    if not ls:
        sys.exit(f"no {kind} launches with sm_marks_us (trace with GPTQTOOL_TRACE_SM={kind})")
    for li, l in enumerate(ls):
        loops = {int(sm): m[0] for sm, m in l["sm_marks_us"].items() if m[0] > 0}
        mid = median(loops.values())
        cut = sorted(loops.values())[-max(1, len(loops) // 10)]
        for sm, v in loops.items():
            late.setdefault(sm, []).append(v - mid)
            when.setdefault(sm, []).append(li)
            tail[sm] = tail.get(sm, 0) + (v >= cut)
    print(f"{len(ls)} {kind} launches; main loop ends, µs after the launch's median SM:")
    print(f'{"SM":>4} {"GPC":>4} {"median":>7} {"latest tenth":>13}')
    gpc = {sm: i for i, g in enumerate(t.get("gpcs") or []) for sm in g}
    for sm in sorted(late, key=lambda s: -median(late[s])):
        print(f"{sm:4d} {gpc.get(sm, -1):4d} {median(late[sm]):7.2f} {tail[sm] / len(ls):12.0%}")
    by = {}
    for sm, v in late.items():
        by.setdefault(gpc.get(sm, -1), []).append(median(v))
    print("by GPC (SMs: median of the SMs' medians, latest SM):",
          ", ".join(f"{g} ({len(v)}): {median(v):.2f}, {max(v):.2f}" for g, v in sorted(by.items())))
    # (By launch: an SM need not run in every launch of a kind whose
    # blocks do not fill every SM; SMs missing from either half are left
    # out.)
    h = len(ls) // 2
    a, b = {}, {}
    for sm, v in late.items():
        first = [x for x, li in zip(v, when[sm]) if li < h]
        second = [x for x, li in zip(v, when[sm]) if li >= h]
        if first and second:
            a[sm], b[sm] = median(first), median(second)
    sms = sorted(a)
    if len(sms) > 2:
        ma, mb = sum(a[s] for s in sms) / len(sms), sum(b[s] for s in sms) / len(sms)
        cov = sum((a[s] - ma) * (b[s] - mb) for s in sms)
        va, vb = sum((a[s] - ma) ** 2 for s in sms), sum((b[s] - mb) ** 2 for s in sms)
        r = cov / (va * vb) ** 0.5 if va > 0 and vb > 0 else float("nan")
        print(f"the SMs' median lateness, first half of the launches against the second: correlation {r:.2f}")


def tails(t):
    """The --tails report (see the module's doc)."""
    by = {}
    for l in t["launches"]:
        m = l.get("marks_us") or []
        if l["kind"] != "qmma" or l.get("partial") or len(m) < 3 or not (m[0][1] and m[2][2]):
            continue
        s = l["start_us"]
        by.setdefault(name(l), []).append([m[0][0] - s, m[0][1] - s, m[1][1] - s if m[1][1] else float("nan"),
                                           m[2][0] - s, m[2][1] - s, m[2][2] - s, l["end_us"] - s])
    if not by:
        sys.exit("no complete qmma launches in the trace")
    print(f'{"product":16} {"launches":>8} {"wait":>13} {"staged":>7} {"loop: first / median / last":>28} {"end":>7} '
          f'{"last-median":>12} {"end-last":>9}')
    for k, v in sorted(by.items(), key=lambda kv: -median([x[6] for x in kv[1]])):
        c = [median(col) for col in zip(*v)]
        spread, after = median([x[5] - x[4] for x in v]), median([x[6] - x[5] for x in v])
        print(f"{k:16} {len(v):8d} {c[0]:6.2f}/{c[1]:6.2f} {c[2]:7.2f} {c[3]:10.2f} {c[4]:8.2f} {c[5]:8.2f} {c[6]:7.2f} "
              f"{spread:12.2f} {after:9.2f}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    t = load(sys.argv[1])
    if "--sm-spread" in sys.argv:
        i = sys.argv.index("--sm-spread")
        if i + 1 >= len(sys.argv):
            sys.exit("--sm-spread KIND")
        sm_spread(t, sys.argv[i + 1])
        return
    if "--tails" in sys.argv:
        tails(t)
        return
    print("records:", ", ".join(f"{m} {n[0]}/{n[1]}" for m, n in sorted(t["records"].items())))
    steps, cur = [], []
    for l in t["launches"]:
        cur.append(l)
        if l["kind"] in ("sample_rows", "argmax_rows"):
            steps.append(cur)
            cur = []
    # A step is complete with every product's launch, none of them partial
    # (an SM's share of the module's records filled while it ran).
    full = [s for s in steps if sum(l["kind"] == "qmma" for l in s) == max(sum(l["kind"] == "qmma" for l in x) for x in steps)
            and not any(l.get("partial") for l in s)]
    if not full:
        sys.exit("no complete step in the trace")
    full.sort(key=lambda s: s[-1]["end_us"] - s[0]["start_us"])
    step = full[len(full) // 2]
    t0 = step[0]["start_us"]
    prev_end = None
    totals = {}
    layers = {}  # kernel -> (wait, staging, loop, after, span) of each launch
    print(f"{len(steps)} steps, {len(full)} complete; the median one: {step[-1]['end_us'] - t0:.1f} µs, {len(step)} launches")
    # Between steps: the head's end to the draw's first block, the draw, and
    # the draw's end to the next step's first traced block (its input upload,
    # its graph's launch, the untraced embedding).
    if len(steps) > 1:
        med = lambda v: sorted(v)[len(v) // 2]
        pairs = [(a, b) for a, b in zip(steps, steps[1:]) if len(a) > 1 and b]
        print("between steps (medians): head end → draw start %.2f µs, draw %.2f µs, draw end → next step's first kernel %.2f µs" % (
            med([a[-1]["start_us"] - a[-2]["end_us"] for a, _ in pairs]),
            med([a[-1]["end_us"] - a[-1]["start_us"] for a, _ in pairs]),
            med([b[0]["start_us"] - a[-1]["end_us"] for a, b in pairs])))
    hdr = f'{"#":>4} {"kernel":24} {"blk":>4} {"start":>8} {"prev end":>8} {"wait":>17} {"staged":>8} {"loop":>8} {"end":>8} {"gap":>6} {"body":>6}  cycles'
    rows = []
    for i, l in enumerate(step):
        m = l["marks_us"]
        w_min, w_med = (m[0][0] - t0, m[0][1] - t0) if m[0][1] else (None, None)
        staged = m[1][1] - t0 if m[1][1] else None
        loop = m[2][1] - t0 if m[2][1] else None
        end = l["end_us"] - t0
        gap = w_med - prev_end if (w_med is not None and prev_end is not None) else None
        body = end - w_med if w_med is not None else None
        span = end - prev_end if prev_end is not None else end - (l["start_us"] - t0)
        k = name(l)
        tot = totals.setdefault(k, [0, 0.0, 0.0, 0.0])
        tot[0] += 1
        tot[1] += span
        tot[2] += gap or 0
        tot[3] += body or 0
        d = lambda a, b: a - b if a is not None and b is not None else None
        layers.setdefault(k, []).append((d(w_med, prev_end), d(staged, w_med), d(loop, staged), d(end, loop), span))
        f = lambda v: f"{v:8.2f}" if v is not None else f'{"-":>8}'
        rows.append(f'{i:4d} {k:24} {l["blocks"]:4d} {f(l["start_us"] - t0)} {f(prev_end)} '
                    f'{(f"{w_min:7.2f} / {w_med:7.2f}" if w_med is not None else "-"):>17} {f(staged)} {f(loop)} {f(end)} '
                    f'{(f"{gap:6.2f}" if gap is not None else "-"):>6} {(f"{body:6.2f}" if body is not None else "-"):>6}  {l["cycles"]}')
        if "--sm" in sys.argv and l.get("sm_load"):
            by = sorted((int(n), c) for n, c in l["sm_load"].items())
            ends = {int(n): e - l["start_us"] for n, e in l.get("load_end_us", {}).items()}
            rows.append(f'{"":29}{l["sms"]} SMs; blocks run: SMs (latest end) ' +
                        ", ".join(f"{n}: {c} ({ends.get(n, 0):.2f})" for n, c in by))
        if "--gpc" in sys.argv and l.get("gpc_load"):
            rows.append(f'{"":29}GPCs (SMs: blocks/SMs used, end): ' +
                        ", ".join(f'{len(t["gpcs"][i])}: {g["blocks"]}/{g["sms"]} ({g["end_us"]:.2f})'
                                  for i, g in enumerate(l["gpc_load"]) if len(t["gpcs"][i]) > 1 or g["blocks"]))
        prev_end = end
    if "--gpc" in sys.argv and t.get("gpcs"):
        print("GPCs:", ", ".join(f"{len(g)} SMs ({g[0]}-{g[-1]})" for g in t["gpcs"]))
    if "--all" in sys.argv:
        print(hdr)
        print("\n".join(rows))
    else:
        print(hdr)
        print("\n".join(rows[:12]))
        print("   … (--all for every launch)")
    print(f'\n{"kernel":24} {"launches":>8} {"µs (prev end → end)":>20} {"gap":>8} {"body":>8}')
    for k, (n, span, gap, body) in sorted(totals.items(), key=lambda x: -x[1][1]):
        print(f"{k:24} {n:8d} {span:20.1f} {gap:8.1f} {body:8.1f}")
    if "--layers" in sys.argv:
        print(f'\nmedians over each kernel\'s launches in the step, µs\n{"kernel":24} {"launches":>8} {"wait":>7} '
              f'{"staging":>8} {"loop":>7} {"after":>7} {"prev end → end":>15}')
        layer = 0.0
        for k, v in layers.items():
            if len(v) < 2:  # (the first norm, the head, the draw)
                continue
            c = [median([x[i] for x in v if x[i] is not None]) if any(x[i] is not None for x in v) else None for i in range(5)]
            layer += c[4]
            f = lambda x: f"{x:7.2f}" if x is not None else f'{"-":>7}'
            print(f"{k:24} {len(v):8d} {f(c[0])} {f(c[1]):>8} {f(c[2])} {f(c[3])} {c[4]:15.2f}")
        print(f"{'a layer (the sum)':24} {'':8} {'':7} {'':>8} {'':7} {'':7} {layer:15.2f}")


if __name__ == "__main__":
    main()
