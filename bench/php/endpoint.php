<?php
// Saves an endpoint stored in the outbox (woosync_endpoint_save) and, with "wake", dispatches one
// event afterwards so a sender on another host notices at its next poll. Prints the wall-clock times.
require __DIR__ . '/common.php';
$a = bench_args();
$t0 = microtime(true);
woosync_endpoint_save($a['name'], $a['config']);
$t1 = microtime(true);
$id = empty($a['wake']) ? null : woosync_dispatch('bench.wake', ['at' => $t1]);
$st = woosync_status();
echo json_encode(['t_save' => $t0, 't_saved' => $t1, 't_wake' => microtime(true), 'wake_id' => $id,
    'worker' => $st['worker'], 'sender_pid' => $st['sender_pid'] ?? null, 'pending' => $st['pending']]);
