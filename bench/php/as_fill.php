<?php
// Enqueue n Action-Scheduler-style actions (the payload kept in extended_args); logs "<action_id> <time>".
require __DIR__ . '/common.php';
$a = bench_args();
$m = bench_mysqli($a);
$payload = json_encode(bench_payload(1));
$log = [];
for ($i = 0; $i < $a['n']; $i++) {
    $m->query(bench_as_insert_sql($m, $i, $payload));
    $log[] = "as_" . $m->insert_id . ' ' . sprintf('%.6f', microtime(true));
}
if (!empty($a['idlog'])) file_put_contents($a['idlog'], implode("\n", $log) . "\n");
echo json_encode(['n' => $a['n']]);
