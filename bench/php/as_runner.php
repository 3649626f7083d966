<?php
// Action-Scheduler-style queue runner, back to back (like `wp action-scheduler run`): claim a batch of 25
// (claims row + UPDATE ... LIMIT 25 + SELECT), then per action: fetch, mark in-progress + log row,
// deliver with a new connection (wp_remote_post), mark complete + log row; release the claim.
require __DIR__ . '/common.php';
$a = bench_args();
$m = bench_mysqli($a);
$url = $a['url'];
$done = 0;
$t0 = microtime(true);
while (true) {
    $now = gmdate('Y-m-d H:i:s');
    $m->query("INSERT INTO wp_actionscheduler_claims (date_created_gmt) VALUES ('$now')");
    $claim = $m->insert_id;
    $m->query("UPDATE wp_actionscheduler_actions SET claim_id=$claim, last_attempt_gmt='$now', last_attempt_local='$now' WHERE claim_id=0 AND scheduled_date_gmt <= '$now' AND status='pending' ORDER BY priority ASC, scheduled_date_gmt ASC, action_id ASC LIMIT 25");
    if ($m->affected_rows === 0) { $m->query("DELETE FROM wp_actionscheduler_claims WHERE claim_id=$claim"); break; }
    $ids = $m->query("SELECT action_id FROM wp_actionscheduler_actions WHERE claim_id=$claim ORDER BY priority ASC, scheduled_date_gmt ASC, action_id ASC")->fetch_all();
    foreach ($ids as [$id]) {
        $row = $m->query("SELECT a.*, g.slug FROM wp_actionscheduler_actions a LEFT JOIN wp_actionscheduler_groups g ON a.group_id=g.group_id WHERE a.action_id=$id")->fetch_assoc();
        $m->query("UPDATE wp_actionscheduler_actions SET attempts = attempts+1, status='in-progress', last_attempt_gmt='$now', last_attempt_local='$now' WHERE action_id=$id");
        $m->query("INSERT INTO wp_actionscheduler_logs (action_id, message, log_date_gmt, log_date_local) VALUES ($id, 'action started via WP CLI', '$now', '$now')");
        $body = json_encode(['id' => "as_$id", 'type' => 'order.updated', 'data' => json_decode($row['extended_args'], true)]);
        $code = bench_post(null, $url, $body, "as_$id", 5.0);
        $m->query("UPDATE wp_actionscheduler_actions SET status='complete' WHERE action_id=$id");
        $m->query("INSERT INTO wp_actionscheduler_logs (action_id, message, log_date_gmt, log_date_local) VALUES ($id, 'action complete via WP CLI', '$now', '$now')");
        $done++;
    }
    $m->query("UPDATE wp_actionscheduler_actions SET claim_id=0 WHERE claim_id=$claim");
    $m->query("DELETE FROM wp_actionscheduler_claims WHERE claim_id=$claim");
}
$t1 = microtime(true);
echo json_encode(['t0' => $t0, 't_end' => $t1, 'done' => $done]);
