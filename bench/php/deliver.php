<?php
// woosync delivery: dispatch n events (burst, or paced every interval_us), log "<id> <dispatch time>" lines,
// then wait with woosync_flush ("warm": seconds to deliver one unlogged event first). Prints JSON timings and status.
require __DIR__ . '/common.php';
$a = bench_args();
$n = $a['n']; $interval = ($a['interval_us'] ?? 0) / 1e6; $keys = $a['keys'] ?? 0;
$log = [];
$payload = bench_payload(1);
if (!empty($a['warm'])) {  // connect, elect and deliver one event first: time a running host, not its start
    woosync_dispatch('bench.warm', ['warm' => true]);
    woosync_flush((float)$a['warm']);
}
$c0 = bench_cpu_s();
$t0 = microtime(true);
$next = $t0;
for ($i = 0; $i < $n; $i++) {
    if ($interval > 0) {
        $next += $interval;
        while (($d = $next - microtime(true)) > 0) { if ($d > 0.0003) usleep((int)(($d - 0.0002) * 1e6)); }
    }
    $opt = $keys > 0 ? ['key' => 'product:' . ($i % $keys)] : null;
    $id = woosync_dispatch('product.updated', $payload, $opt);
    $log[] = $id . ' ' . sprintf('%.6f', microtime(true));
}
$t1 = microtime(true);
$ok = woosync_flush($a['flush_timeout'] ?? 60.0);
$t2 = microtime(true);
$c1 = bench_cpu_s();
if (!empty($a['idlog'])) file_put_contents($a['idlog'], implode("\n", $log) . "\n");
$st = woosync_status();
echo json_encode(['t0' => $t0, 't_dispatched' => $t1, 't_end' => $t2, 'flushed' => $ok, 'pid' => getmypid(),
    'worker' => $st['worker'], 'sender_pid' => $st['sender_pid'] ?? null, 'delivered' => $st['delivered'], 'pending' => $st['pending'], 'dead' => $st['dead'],
    // the extension's threads over the whole run: routing, delivering and recording every event (delivery
    // starts during the dispatch loop, so the flush alone would miss part of it)
    'sender_cpu_s' => ($c1['process'] - $c0['process']) - ($c1['main'] - $c0['main'])] + bench_rss_kb());
