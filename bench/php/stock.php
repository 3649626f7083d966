<?php
// php-fpm route: a stock change (UPDATE in MariaDB, new connection per request as WordPress does), then
// the CRM hears of it: ?m=ws woosync_dispatch (coalesced per product), ?m=sync a synchronous POST (5 s timeout).
require __DIR__ . '/common.php';
$pid = mt_rand(1, 1000);
$m = mysqli_init();
$m->real_connect('localhost', 'root', '', 'wp', 0, getenv('MYSQL_SOCKET'));
$m->query("UPDATE wp_postmeta SET meta_value = meta_value - 1 WHERE post_id = $pid AND meta_key = '_stock'");
$stock = (int)$m->query("SELECT meta_value FROM wp_postmeta WHERE post_id = $pid AND meta_key = '_stock'")->fetch_row()[0];
$m->close();
$p = ['id' => $pid, 'sku' => "SKU-$pid", 'stock_quantity' => $stock, 'stock_status' => $stock > 0 ? 'instock' : 'outofstock'];
$t = hrtime(true);
if (($_GET['m'] ?? 'ws') === 'ws') {
    woosync_dispatch('product.stock_updated', $p, ['key' => "product:$pid", 'coalesce' => true]);
} else {
    $id = 'evt_' . strtoupper(bin2hex(random_bytes(13)));
    bench_post(null, getenv('CRM_URL'), json_encode(['id' => $id, 'type' => 'product.stock_updated', 'data' => $p]), $id, 5.0);
}
$us = (hrtime(true) - $t) / 1000;
if ($log = getenv('NOTIFY_LOG')) file_put_contents($log . '.' . getmypid(), sprintf("%.1f\n", $us), FILE_APPEND);
echo "ok $stock\n";
