<?php
/**
 * Loads the test WordPress for a PHP test script: `require '<this file>';` at the top.
 * Env: WOOSYNC_WP_ROOT (WordPress directory), WOOSYNC_WP_URL (site URL).
 * Defines out() (one JSON line) for results.
 */
require __DIR__ . '/server-vars.php';
t_server_vars();
require rtrim( getenv( 'WOOSYNC_WP_ROOT' ), '/' ) . '/wp-load.php';

/** Prints one JSON line. */
function out( $value ) {
	echo json_encode( $value, JSON_UNESCAPED_SLASHES | JSON_PRESERVE_ZERO_FRACTION | JSON_PARTIAL_OUTPUT_ON_ERROR ), "\n";
}
require __DIR__ . '/helpers.php';
