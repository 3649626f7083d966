<?php
// A "host" whose only job is to send: joins the election and runs the sender in this process
// (woosync_serve) until SIGTERM or max_s. Prints one JSON line once woosync_status() says this
// process is the sender (or after ready_s seconds, with the role it has then).
require __DIR__ . '/common.php';
$a = bench_args();
$t0 = microtime(true);
$st = woosync_status();
while ($st['worker'] !== 'sender' && microtime(true) - $t0 < ($a['ready_s'] ?? 30)) {
    woosync_serve(0.1);  // the sender keeps running in this process after the call returns
    $st = woosync_status();
}
echo json_encode(['pid' => getmypid(), 'worker' => $st['worker'], 'sender_pid' => $st['sender_pid'] ?? null,
    'waited_s' => microtime(true) - $t0]), "\n";
$done = woosync_serve((float)($a['max_s'] ?? 600));
fwrite(STDERR, "serve: $done attempts finished\n");
