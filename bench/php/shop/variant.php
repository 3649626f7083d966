<?php
/**
 * Checkout benchmark: configures one variant on the installed shop, through the plugins' own APIs
 * (run with the real WP-CLI: `wp eval-file variant.php`). Environment: BENCH_VARIANT, BENCH_CRM_URL,
 * BENCH_SECRET. Prints one JSON line describing what was configured.
 *
 * - woosync: the plugin's settings (Settings → WooSync) point at the CRM with every topic; saving
 *   them pushes the `wordpress` endpoint to the outbox, as the settings page does.
 * - wc_webhooks: WooCommerce webhooks (WooCommerce → Settings → Advanced → Webhooks) for the same
 *   topics, active, API v3 payloads, delivered by WooCommerce's default (asynchronous, Action
 *   Scheduler). WooCommerce has no stock topic: product.updated is the nearest.
 * - sync, none: nothing in the database (sync is a must-use plugin the bench adds).
 */

$variant = (string) getenv( 'BENCH_VARIANT' );
$crm     = rtrim( (string) getenv( 'BENCH_CRM_URL' ), '/' );
$secret  = (string) getenv( 'BENCH_SECRET' );
$out     = array( 'variant' => $variant );

if ( 'woosync' === $variant ) {
	update_option(
		'woosync_settings',
		array(
			'url'      => $crm . '/woosync',
			'secret'   => $secret,
			'topics'   => array_keys( \Woosync\Settings::topics() ),
			'crm_user' => 0,
			'enabled'  => true,
		)
	);
	$out['endpoints'] = function_exists( 'woosync_endpoints' ) ? count( woosync_endpoints() ) : null;
} elseif ( 'wc_webhooks' === $variant ) {
	$admin = get_user_by( 'login', 'admin' );
	$ids   = array();
	foreach ( array( 'order.created', 'order.updated', 'product.updated', 'customer.created', 'customer.updated' ) as $topic ) {
		$webhook = new WC_Webhook();
		$webhook->set_name( 'CRM ' . $topic );
		$webhook->set_user_id( $admin ? $admin->ID : 1 );
		$webhook->set_topic( $topic );
		$webhook->set_secret( $secret );
		$webhook->set_delivery_url( $crm . '/wc' );
		$webhook->set_api_version( 'wp_api_v3' );
		$webhook->set_status( 'active' );
		$ids[ $topic ] = $webhook->save();
	}
	$out['webhooks'] = $ids;
}

echo wp_json_encode( $out ), "\n";
