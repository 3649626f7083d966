import sqlite3, os, random, time, sys
def run(av, uniq, keyseq, n=3000):
    p=sys.argv[1] if len(sys.argv) > 1 else '/tmp/woosync-frames.db'
    for s in ('','-wal','-shm'):
        try: os.unlink(p+s)
        except FileNotFoundError: pass
    c=sqlite3.connect(p, isolation_level=None)
    if av: c.execute("pragma auto_vacuum=INCREMENTAL")
    c.execute("pragma journal_mode=WAL"); c.execute("pragma synchronous=NORMAL"); c.execute("pragma wal_autocheckpoint=0")
    c.execute(f"create table events(id INTEGER PRIMARY KEY, event_id TEXT NOT NULL {'UNIQUE' if uniq else ''}, topic TEXT, key TEXT, seq INTEGER, created_at REAL, unrouted INTEGER DEFAULT 0, coalesce INTEGER DEFAULT 0, route TEXT, data_offset INTEGER, body BLOB, raw INTEGER DEFAULT 0, headers TEXT)")
    c.execute("create table key_seq(key TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID")
    c.execute("create table meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID")
    body=b'x'*1020
    c.execute("pragma wal_checkpoint(TRUNCATE)")
    t=time.perf_counter()
    for i in range(n):
        c.execute("BEGIN IMMEDIATE")
        c.execute("select v from meta where k='moved_to'").fetchall()
        seq=1
        if keyseq:
            seq=c.execute("INSERT INTO key_seq(key, seq) VALUES (?, 1) ON CONFLICT(key) DO UPDATE SET seq = seq + 1 RETURNING seq",(f"order:{i}",)).fetchone()[0]
        eid='evt_%013X%013X'%(int(time.time()*1000)*1000+i, random.getrandbits(50))
        c.execute("INSERT INTO events(event_id, topic, key, seq, created_at, coalesce, route, data_offset, body, raw, headers) VALUES (?,?,?,?,?,?,?,?,?,?,?)",(eid,'order.updated',f"order:{i}",seq,time.time(),0,None,80,body,0,None))
        c.execute("COMMIT")
    dt=time.perf_counter()-t
    frames=(os.path.getsize(p+'-wal')-32)/(4096+24)
    print(f"av={av} uniq={uniq} keyseq={keyseq}: {frames/n:.2f} frames/txn, {dt/n*1e6:.1f} us/txn")
for av in (1,0):
  for uniq in (1,0):
    for ks in (1,0):
      run(av,uniq,ks)
