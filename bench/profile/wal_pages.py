#!/usr/bin/env python3
"""WAL frames per commit, by the b-tree each page belongs to (told from the page's own records).

    cp /tmp/keep/o.db-wal /tmp/snap.wal     # a copy taken while the sender runs
    python3 bench/profile/wal_pages.py /tmp/snap.wal

Reads the frames of the WAL's current generation (those with the header's salts). A page is
classed by its first record: column count and types tell `deliveries`, `attempts`, each index
of `deliveries`, `counters`... (`attempts_delivery` and `deliveries_event` have the same shape;
without routing in the measured run, it is the former). Page numbers are not used: pages freed
by one b-tree are reused by another within seconds."""
import struct, sys, collections
data = open(sys.argv[1], 'rb').read()
magic, ver, psz, ckseq, s1, s2, c1, c2 = struct.unpack('>IIIIIIII', data[:32])
def varint(b, i):
    v = 0
    for k in range(9):
        c = b[i+k]
        if k == 8: return (v << 8) | c, i+9
        v = (v << 7) | (c & 0x7f)
        if c < 0x80: return v, i+k+1
def record_types(page, off, table):
    i = off
    if table:
        _, i = varint(page, i)  # payload size
        _, i = varint(page, i)  # rowid
    else:
        _, i = varint(page, i)
    hl, j = varint(page, i)
    end = i + hl; t = []
    while j < end:
        st, j = varint(page, j); t.append(st)
    vals = []
    k = end
    for st in t:
        if st == 0: vals.append(None); continue
        if 1 <= st <= 6:
            n = [0,1,2,3,4,6,8][st]; vals.append(int.from_bytes(page[k:k+n], 'big', signed=True)); k += n
        elif st == 7: vals.append(struct.unpack('>d', page[k:k+8])[0]); k += 8
        elif st in (8, 9): vals.append(st - 8)
        elif st >= 12:
            n = (st - 12) // 2; vals.append(('b' if st % 2 == 0 else 't', page[k:k+n])); k += n
    return t, vals
def kind(pg, page):
    if pg == 1: return 'page 1 (database header: freelist)'
    h = 0
    typ = page[h]
    if typ not in (2, 5, 10, 13): return 'other(overflow/freelist/ptrmap)'
    ncell = struct.unpack('>H', page[h+3:h+5])[0]
    if typ in (2, 5): return 'interior ' + ('index' if typ == 2 else 'table')
    if ncell == 0: return 'empty leaf'
    hdr = h + 8
    off = struct.unpack('>H', page[hdr:hdr+2])[0]
    t, vals = record_types(page, off, typ == 13)
    n = len(t)
    if typ == 13:
        return {13: 'deliveries', 14: 'events', 9: 'attempts'}.get(n, f'table{n}' if n < 20 else 'endpoints')
    def isint(v): return isinstance(v, int)
    if n == 4 and isinstance(vals[1], tuple) and isinstance(vals[2], tuple): return 'counters'
    if n == 4 and isinstance(vals[2], float): return 'deliveries_due'
    if n == 4: return 'deliveries_key'
    if n == 3 and ncell <= 16 and isinstance(vals[1], int) and 0 <= vals[1] <= 6: return 'stats'
    if n == 3: return 'deliveries_open'
    if n == 2 and isinstance(vals[0], tuple): return 'meta/key_seq'
    if n == 2: return 'attempts_delivery|deliveries_event'
    return f'index{n}'
frames = collections.Counter(); commits = 0; nf = 0
i = 32
while i + 24 + psz <= len(data):
    pg, cs, fs1, fs2 = struct.unpack('>IIII', data[i:i+16])
    if (fs1, fs2) != (s1, s2): break
    page = data[i+24:i+24+psz]
    frames[kind(pg, page)] += 1; nf += 1
    if cs: commits += 1
    i += 24 + psz
print(f"{nf} frames, {commits} commits, {nf/max(commits,1):.2f} frames/commit")
for k, v in frames.most_common(): print(f"  {k:40s} {v:6d} {v/max(commits,1):5.2f}/commit")
