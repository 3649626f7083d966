<?php
// deliver2: N dispatches, then flush; CPU of the delivery phase only (getrusage before/after flush)
$n = (int)($argv[1] ?? 20000);
for ($i = 0; $i < $n; $i++) woosync_dispatch('order.created', ['id' => $i, 'pad' => str_repeat('x', 600)], ['key' => 'k' . ($i % 1000)]);
$r0 = getrusage();
$s = microtime(true);
$ok = woosync_flush(120);
$dt = microtime(true) - $s;
$r1 = getrusage();
$cpu = fn($r) => $r['ru_utime.tv_sec'] + $r['ru_utime.tv_usec']/1e6 + $r['ru_stime.tv_sec'] + $r['ru_stime.tv_usec']/1e6;
printf("%.0f/s cpu_us_per_event %.1f flushed=%s\n", $n / $dt, ($cpu($r1) - $cpu($r0)) / $n * 1e6, var_export($ok, true));
