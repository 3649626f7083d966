<?php
// Shared by the bench scripts: an order-like payload (~750 bytes encoded) and small helpers.
function bench_args(): array {
    global $argv;
    return isset($argv[1]) ? json_decode($argv[1], true) : [];
}
function bench_payload(int $i): array {
    return [
        'id' => 1000 + $i, 'parent_id' => 0, 'status' => 'processing', 'currency' => 'EUR',
        'date_created' => '2026-11-23T10:00:00', 'total' => '129.90', 'total_tax' => '20.74',
        'customer_id' => 42, 'order_key' => 'wc_order_' . str_pad((string)$i, 13, '0', STR_PAD_LEFT),
        'billing' => ['first_name' => 'Ada', 'last_name' => 'Lovelace', 'company' => '', 'address_1' => '12 Analytical Way',
            'city' => 'London', 'postcode' => 'N1 9GU', 'country' => 'GB', 'email' => 'ada@example.com', 'phone' => '+44 20 7946 0000'],
        'shipping' => ['first_name' => 'Ada', 'last_name' => 'Lovelace', 'address_1' => '12 Analytical Way', 'city' => 'London',
            'postcode' => 'N1 9GU', 'country' => 'GB'],
        'payment_method' => 'stripe', 'transaction_id' => 'ch_3Nx' . $i,
        'line_items' => [
            ['id' => 1, 'name' => 'Difference Engine mug', 'product_id' => 101, 'sku' => 'MUG-101', 'quantity' => 2, 'total' => '39.80'],
            ['id' => 2, 'name' => 'Punched-card notebook', 'product_id' => 202, 'sku' => 'NB-202', 'quantity' => 1, 'total' => '69.36'],
        ],
        'meta_data' => [['key' => '_wc_order_attribution_source_type', 'value' => 'typein']],
    ];
}
function bench_envelope(string $id, int $i): string {
    $ts = gmdate('Y-m-d\TH:i:s') . sprintf('.%03dZ', (int)(fmod(microtime(true), 1) * 1000));
    return json_encode(['id' => $id, 'type' => 'order.updated', 'timestamp' => $ts, 'key' => "order:$i", 'sequence' => 1, 'data' => bench_payload($i)]);
}
// CPU seconds (user + sys) of this process, and of its main (PHP) thread alone: their difference is what
// the extension's own threads (sender, delivery threads, checkpointer) used, exited threads included.
function bench_cpu_s(): array {
    $r = getrusage();
    $all = $r['ru_utime.tv_sec'] + $r['ru_utime.tv_usec'] / 1e6 + $r['ru_stime.tv_sec'] + $r['ru_stime.tv_usec'] / 1e6;
    $s = (string)file_get_contents('/proc/self/task/' . getmypid() . '/stat');
    $f = explode(' ', substr($s, strrpos($s, ')') + 2));
    return ['process' => $all, 'main' => ((int)$f[11] + (int)$f[12]) / 100.0];  // USER_HZ = 100 on Linux
}
function bench_rss_kb(): array {
    $s = file_get_contents('/proc/self/status');
    preg_match('/VmRSS:\s+(\d+)/', $s, $a); preg_match('/VmHWM:\s+(\d+)/', $s, $b);
    return ['rss_kb' => (int)$a[1], 'hwm_kb' => (int)$b[1]];
}
// POST one body; $ch = null opens a new connection (as wp_remote_post does), else reuses the handle (keep-alive).
function bench_post(?CurlHandle $ch, string $url, string $body, string $id, float $timeout = 5.0): int {
    $own = $ch === null;
    if ($own) $ch = curl_init();
    curl_setopt_array($ch, [CURLOPT_URL => $url, CURLOPT_POST => true, CURLOPT_POSTFIELDS => $body,
        CURLOPT_RETURNTRANSFER => true, CURLOPT_TIMEOUT_MS => (int)($timeout * 1000),
        CURLOPT_HTTPHEADER => ['Content-Type: application/json', 'webhook-id: ' . $id, 'Expect:']]);
    $r = curl_exec($ch);
    $code = $r === false ? 0 : curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
    if ($own) curl_close($ch);
    return $code;
}
function bench_mysqli(array $a): mysqli {
    $m = mysqli_init();
    $m->real_connect('localhost', 'root', '', 'wp', 0, $a['mysql_socket']);
    return $m;
}
function bench_as_insert_sql(mysqli $m, int $i, string $extended = ''): string {
    // The row as_enqueue_async_action('woocommerce_deliver_webhook_async', ...) writes for a WooCommerce webhook.
    $now = gmdate('Y-m-d H:i:s');
    $args = json_encode(['webhook_id' => 1, 'arg' => 1000 + $i]);
    $ext = $extended === '' ? 'NULL' : "'" . $m->real_escape_string($extended) . "'";
    return "INSERT INTO wp_actionscheduler_actions (hook, status, scheduled_date_gmt, scheduled_date_local, priority, args, schedule, group_id, attempts, last_attempt_gmt, last_attempt_local, claim_id, extended_args) VALUES ('woocommerce_deliver_webhook_async', 'pending', '$now', '$now', 10, '" . $m->real_escape_string($args) . "', 'O:28:\"ActionScheduler_NullSchedule\":0:{}', 1, 0, '0000-00-00 00:00:00', '0000-00-00 00:00:00', 0, $ext)";
}
