<?php
/**
 * Checkout benchmark: lets WordPress's safe HTTP API (wp_safe_remote_request(), which WooCommerce's
 * webhooks use) reach the bench's local CRM. WordPress refuses loopback addresses unless
 * `http_request_host_is_external` allows them, and ports other than 80/443/8080 unless
 * `http_allowed_safe_ports` does. Only the CRM's port on 127.0.0.1 is allowed (BENCH_CRM_PORT,
 * defined in the bench's wp-config.php). Installed in every variant, so they run the same code.
 */

defined( 'ABSPATH' ) || exit;

add_filter(
	'http_request_host_is_external',
	static function ( $external, $host, $url ) {
		return $external || ( '127.0.0.1' === $host && (int) wp_parse_url( $url, PHP_URL_PORT ) === (int) BENCH_CRM_PORT );
	},
	10,
	3
);

add_filter(
	'http_allowed_safe_ports',
	static function ( $ports, $host ) {
		if ( '127.0.0.1' === $host ) {
			$ports[] = (int) BENCH_CRM_PORT;
		}
		return $ports;
	},
	10,
	2
);
