<?php
// CLI exit delay: dispatch one event (or not), print the time of the last statement, end.
$a = json_decode($argv[1], true);
if ($a['dispatch']) woosync_dispatch('order.created', ['id' => 1]);
fwrite(STDOUT, sprintf("%.6f\n", microtime(true)));
