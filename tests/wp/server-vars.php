<?php
/**
 * $_SERVER values WordPress expects, for PHP test scripts run from the CLI (what WP-CLI sets from --url).
 *
 * @param string|null $url Site URL; default from WOOSYNC_WP_URL.
 */
function t_server_vars( $url = null ) {
	$url   = $url ? $url : getenv( 'WOOSYNC_WP_URL' );
	$parts = parse_url( (string) $url );
	$host  = ( $parts['host'] ?? 'localhost' ) . ( isset( $parts['port'] ) ? ':' . $parts['port'] : '' );
	$_SERVER['HTTP_HOST']       = $host;
	$_SERVER['SERVER_NAME']     = $parts['host'] ?? 'localhost';
	$_SERVER['SERVER_PORT']     = $parts['port'] ?? 80;
	$_SERVER['REQUEST_URI']     = rtrim( $parts['path'] ?? '', '/' ) . '/';
	$_SERVER['REQUEST_METHOD']  = 'GET';
	$_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1';
	$_SERVER['REMOTE_ADDR']     = '127.0.0.1';
}
