<?php
// Request-path cost of enqueuing one event, per call, in ns: {"samples":[...], "first_ns":...}
require __DIR__ . '/common.php';
$a = bench_args();
$n = $a['n']; $mode = $a['mode']; $url = $a['url'] ?? '';
$s = [];
if ($mode === 'sqlite') {
    $pdo = new PDO('sqlite:' . $a['db']);
    $pdo->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION);
    $pdo->exec('PRAGMA journal_mode=WAL'); $pdo->exec('PRAGMA synchronous=NORMAL');
    $pdo->exec('CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, key TEXT, seq INTEGER NOT NULL, body BLOB NOT NULL, created_at REAL NOT NULL)');
    $st = $pdo->prepare('INSERT INTO events(event_id, topic, key, seq, body, created_at) VALUES (?,?,?,?,?,?)');
} elseif ($mode === 'as') {
    $m = bench_mysqli($a);
} elseif ($mode === 'curl') {
    // nothing to set up: a new connection per call, as wp_remote_post does
}
for ($i = 0; $i < $n; $i++) {
    if ($mode === 'woosync') {
        $p = bench_payload($i);
        $t = hrtime(true);
        woosync_dispatch('order.updated', $p, ['key' => "order:$i"]);
        $s[] = hrtime(true) - $t;
    } elseif ($mode === 'sqlite') {
        $id = 'evt_' . strtoupper(bin2hex(random_bytes(13)));
        $body = bench_envelope($id, $i);
        $t = hrtime(true);
        $st->execute([$id, 'order.updated', "order:$i", 1, $body, microtime(true)]);
        $s[] = hrtime(true) - $t;
    } elseif ($mode === 'as') {
        $sql = bench_as_insert_sql($m, $i);
        $t = hrtime(true);
        $m->query($sql);
        $s[] = hrtime(true) - $t;
    } else {
        $p = bench_payload($i);
        $t = hrtime(true);
        $id = 'evt_' . strtoupper(bin2hex(random_bytes(13)));
        bench_post(null, $url, json_encode(['id' => $id, 'type' => 'order.updated', 'data' => $p]), $id, 5.0);
        $s[] = hrtime(true) - $t;
    }
}
echo json_encode(['samples' => $s]);
