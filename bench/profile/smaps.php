<?php
// RSS by mapping (anonymous, the .so, heap, -shm): idle, after the first dispatch + flush, after 20,000 dispatched and delivered
require __DIR__ . "/../php/common.php";
$payload = bench_payload(1);
function agg() { $cur = null; $t = [];
  foreach (file('/proc/self/smaps') as $l) {
    if (preg_match('/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/', $l, $m)) { $cur = $m[1] === '' ? '[anon]' : basename($m[1]); }
    elseif (preg_match('/^Rss:\s+(\d+)/', $l, $m)) { $t[$cur] = ($t[$cur] ?? 0) + (int)$m[1]; } }
  arsort($t); return $t; }
$a = agg();
woosync_dispatch('product.updated', $payload); woosync_flush(10.0); usleep(200000);
$b = agg();
for ($i = 0; $i < 20000; $i++) woosync_dispatch('product.updated', $payload, ['key' => 'product:' . ($i % 1000)]);
woosync_flush(60.0);
$c = agg();
foreach ($c as $k => $v) { $d = $v - ($a[$k] ?? 0); if (abs($d) >= 64) printf("%-40s idle %6d first %6d load %6d  (+%d)\n", $k, $a[$k] ?? 0, $b[$k] ?? 0, $v, $d); }
