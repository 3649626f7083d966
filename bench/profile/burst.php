<?php
$n = (int)($argv[1] ?? 20000);
for ($i = 0; $i < $n; $i++) woosync_dispatch('order.created', ['id' => $i]);
$s = microtime(true);
$ok = woosync_flush(120);
$dt = microtime(true) - $s;
$ru = getrusage();
printf("delivered %d in %.2f s: %.0f/s (flushed=%s) cpu user %.2f sys %.2f\n", $n, $dt, $n / $dt, var_export($ok, true), $ru['ru_utime.tv_sec'] + $ru['ru_utime.tv_usec']/1e6, $ru['ru_stime.tv_sec'] + $ru['ru_stime.tv_usec']/1e6);
