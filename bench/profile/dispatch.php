<?php
require __DIR__ . '/../php/common.php';
$n = (int)($argv[1] ?? 20000);
$s = [];
for ($i = 0; $i < $n; $i++) {
    $p = bench_payload($i);
    $t = hrtime(true);
    woosync_dispatch('order.updated', $p, ['key' => "order:$i"]);
    $s[] = hrtime(true) - $t;
}
sort($s);
printf("n=%d p50 %.1f us p99 %.1f us\n", $n, $s[intdiv($n,2)]/1000, $s[intdiv($n*99,100)]/1000);
