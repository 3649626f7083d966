<?php
// A fresh process on a big outbox: RSS and time of status() and of one dispatch.
require __DIR__ . '/common.php';
$r = ['start' => bench_rss_kb()];
$t = hrtime(true); $st = woosync_status(); $r['status_ms'] = (hrtime(true) - $t) / 1e6;
$r['pending'] = $st['pending'];
$r['after_status'] = bench_rss_kb();
$t = hrtime(true); woosync_dispatch('order.updated', bench_payload(1)); $r['dispatch_ms'] = (hrtime(true) - $t) / 1e6;
$t = hrtime(true); woosync_dispatch('order.updated', bench_payload(2)); $r['dispatch2_ms'] = (hrtime(true) - $t) / 1e6;
usleep(300000);
$r['after_dispatch'] = bench_rss_kb();
echo json_encode($r);
