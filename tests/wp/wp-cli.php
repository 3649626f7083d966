<?php
/**
 * The stand-in `wp` binary: php [-d extension=…] tests/wp/wp-cli.php --path=<wp> [--url=<url>] <command> …
 *
 * Loads WordPress the way WP-CLI does (WP_CLI defined, global scope, plugins loaded), then runs
 * the command through the stand-in dispatcher. Exit code 0, or 1 after WP_CLI::error().
 */

$standin_argv = array_slice( $argv, 1 );
$standin_path = null;
$standin_url  = null;
foreach ( $standin_argv as $standin_i => $standin_arg ) {
	if ( 0 === strpos( $standin_arg, '--path=' ) ) {
		$standin_path = substr( $standin_arg, 7 );
		unset( $standin_argv[ $standin_i ] );
	} elseif ( 0 === strpos( $standin_arg, '--url=' ) ) {
		$standin_url = substr( $standin_arg, 6 );
		unset( $standin_argv[ $standin_i ] );
	}
}
if ( ! $standin_path ) {
	fwrite( STDERR, "Error: --path=<wordpress dir> is required\n" );
	exit( 1 );
}

define( 'WP_CLI', true );
require __DIR__ . '/wp-cli-standin.php';
require __DIR__ . '/server-vars.php';
standin_server_vars( $standin_url );

require rtrim( $standin_path, '/' ) . '/wp-load.php';

WP_CLI::run_command( array_values( $standin_argv ) );
