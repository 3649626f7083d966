<?php
// Memory: RSS at stages. stage=idle (extension loaded or not, nothing dispatched), then with the extension:
// after one dispatch + flush, and peak during n dispatches delivered to a healthy receiver.
require __DIR__ . '/common.php';
$a = bench_args();
$r = ['idle' => bench_rss_kb()];
$payload = bench_payload(1);
if (function_exists('woosync_dispatch') && ($a['n'] ?? 0) > 0) {
    woosync_dispatch('product.updated', $payload); woosync_flush(10.0);
    usleep(200000);
    $r['after_first'] = bench_rss_kb();
    $peak = 0;
    for ($i = 0; $i < $a['n']; $i++) {
        woosync_dispatch('product.updated', $payload, ['key' => 'product:' . ($i % 1000)]);
        if ($i % 1000 == 0) $peak = max($peak, bench_rss_kb()['rss_kb']);
    }
    woosync_flush(60.0);
    $r['after_load'] = bench_rss_kb();
    $r['peak_sampled_kb'] = max($peak, $r['after_load']['rss_kb']);
    $r['delivered'] = woosync_status()['delivered'];
} elseif (($a['n'] ?? 0) > 0) {
    // the same work without the extension, as the baseline for "under load"
    for ($i = 0; $i < $a['n']; $i++) { $x = json_encode($payload); }
    $r['after_load'] = bench_rss_kb();
}
echo json_encode($r);
