<?php
// Fill the outbox (CRM down): n dispatches, RSS sampled every `every` events.
require __DIR__ . '/common.php';
$a = bench_args();
$payload = bench_payload(1);
$samples = [];
$t0 = microtime(true);
for ($i = 0; $i < $a['n']; $i++) {
    woosync_dispatch('order.updated', $payload, ['key' => 'order:' . ($a['base'] + $i)]);
    if ($i % $a['every'] == 0) $samples[] = [$i, bench_rss_kb()['rss_kb']];
}
$t1 = microtime(true);
echo json_encode(['n' => $a['n'], 'seconds' => $t1 - $t0, 'rss_samples' => $samples, 'end' => bench_rss_kb()]);
