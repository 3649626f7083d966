<?php
// Becomes the sender of an outbox (first to use it), then stays alive until the file named in "until" exists.
require __DIR__ . '/common.php';
$a = bench_args();
woosync_dispatch('product.updated', ['warm' => true]);
woosync_flush(5.0);
echo json_encode(['pid' => getmypid(), 'sender_pid' => woosync_status()['sender_pid'] ?? null]), "\n";
$end = microtime(true) + ($a['max_s'] ?? 120);
while (!file_exists($a['until']) && microtime(true) < $end) usleep(20000);
