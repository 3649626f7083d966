<?php
// The `mysql` scenario's request-path cost per call, in ns: {"samples": {system: [...]}, ...}.
// `systems` are timed call by call in turn (the order rotates every round), so a noisy neighbour hits
// all of them alike:
//   woosync          keyed woosync_dispatch() (order.updated, `keys` keys, the order-like payload) into the
//                    outbox that woosync.database names (MariaDB URL or SQLite path)
//   bare_autocommit  one row of the same size into a plain InnoDB table (auto-increment PK) through mysqli
//                    over TCP, one prepared statement, autocommit: 1 round trip
//   bare_commit      the same with START TRANSACTION, INSERT, COMMIT: 3 round trips
//   bare_two_rows    what a keyed dispatch must write at least, in one round trip (multi-statement):
//                    START TRANSACTION; the key's counter row upserted (LAST_INSERT_ID(seq + 1)); the row
//                    with that sequence number; COMMIT
// Rows and payloads are built outside the timer. Reports this process's woosync role when it dispatched.
require __DIR__ . '/common.php';
$a = bench_args();
$n = $a['n']; $keys = $a['keys'] ?? 500; $systems = $a['systems'];
$s = array_fill_keys($systems, []);
$m = $st = null;
if (array_intersect($systems, ['bare_autocommit', 'bare_commit', 'bare_two_rows'])) {
    mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
    $m = mysqli_init();
    $m->real_connect('127.0.0.1', $a['user'], $a['password'], $a['dbname'], (int)$a['port']);
    $m->query("CREATE TABLE IF NOT EXISTS `{$a['table']}` (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        . "event_id CHAR(30) NOT NULL, topic VARCHAR(191) NOT NULL, ev_key VARCHAR(191) NULL, seq BIGINT NOT NULL, "
        . "body MEDIUMBLOB NOT NULL, created_at DOUBLE NOT NULL) ENGINE=InnoDB");
    $m->query("CREATE TABLE IF NOT EXISTS `{$a['table']}_seq` (ev_key VARCHAR(191) NOT NULL PRIMARY KEY, seq BIGINT NOT NULL) ENGINE=InnoDB");
    $st = $m->prepare("INSERT INTO `{$a['table']}` (event_id, topic, ev_key, seq, body, created_at) VALUES (?,?,?,?,?,?)");
}
$bytes = 0; $nb = 0;
$k = count($systems);
for ($i = 0; $i < $n; $i++) {
    for ($j = 0; $j < $k; $j++) {
        $sys = $systems[($i + $j) % $k];
        if ($sys === 'woosync') {
            $p = bench_payload($i);
            $o = ['key' => 'order:' . ($i % $keys)];
            $t = hrtime(true);
            woosync_dispatch('order.updated', $p, $o);
            $s[$sys][] = hrtime(true) - $t;
        } else {
            $id = 'evt_' . strtoupper(bin2hex(random_bytes(13)));
            $body = bench_envelope($id, $i);
            $bytes += strlen($body); $nb++;
            $topic = 'order.updated'; $key = 'order:' . ($i % $keys); $seq = intdiv($i, $keys) + 1; $now = microtime(true);
            if ($sys === 'bare_two_rows') {
                $q = "START TRANSACTION; INSERT INTO `{$a['table']}_seq` (ev_key, seq) VALUES ('$key', LAST_INSERT_ID(1)) "
                    . "ON DUPLICATE KEY UPDATE seq = LAST_INSERT_ID(seq + 1); INSERT INTO `{$a['table']}` "
                    . "(event_id, topic, ev_key, seq, body, created_at) VALUES ('$id', '$topic', '$key', LAST_INSERT_ID(), '"
                    . $m->real_escape_string($body) . "', $now); COMMIT";
                $t = hrtime(true);
                $m->multi_query($q);
                do {
                    if ($r = $m->store_result()) $r->free();
                } while ($m->more_results() && $m->next_result());
                $s[$sys][] = hrtime(true) - $t;
                continue;
            }
            $st->bind_param('sssisd', $id, $topic, $key, $seq, $body, $now);
            $t = hrtime(true);
            if ($sys === 'bare_commit') {
                $m->begin_transaction();
                $st->execute();
                $m->commit();
            } else {
                $st->execute();
            }
            $s[$sys][] = hrtime(true) - $t;
        }
    }
}
$out = ['samples' => $s, 'pid' => getmypid(), 'body_bytes_avg' => $nb ? $bytes / $nb : null];
if (in_array('woosync', $systems, true)) {
    $w = woosync_status();
    $out += ['worker' => $w['worker'], 'sender_pid' => $w['sender_pid'] ?? null, 'pending' => $w['pending'],
             'delivered' => $w['delivered']];
}
echo json_encode($out);
