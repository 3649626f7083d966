<?php
// Synchronous delivery loop: POST n events one after another. reuse=true keeps one curl handle (keep-alive).
require __DIR__ . '/common.php';
$a = bench_args();
$ch = ($a['reuse'] ?? true) ? curl_init() : null;
$ok = 0;
$t0 = microtime(true);
for ($i = 0; $i < $a['n']; $i++) {
    $id = 'evt_' . strtoupper(bin2hex(random_bytes(13)));
    if (bench_post($ch, $a['url'], bench_envelope($id, $i), $id, 5.0) === 200) $ok++;
}
$t1 = microtime(true);
echo json_encode(['t0' => $t0, 't_end' => $t1, 'ok' => $ok]);
