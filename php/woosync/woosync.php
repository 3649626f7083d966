<?php
/**
 * Plugin Name:       WooSync
 * Plugin URI:        https://github.com/woosync/woosync
 * Description:       Sends WooCommerce stock, order and customer changes to your CRM through the woosync PHP extension: durable, signed, in order, retried until delivered.
 * Version:           0.1.0
 * Requires at least: 6.1
 * Requires PHP:      8.1
 * Author:            woosync
 * License:           GPL-2.0-or-later
 * License URI:       https://www.gnu.org/licenses/gpl-2.0.html
 * Text Domain:       woosync
 * Domain Path:       /languages
 * WC requires at least: 7.9
 * WC tested up to: 11.0
 *
 * @package Woosync
 */

defined( 'ABSPATH' ) || exit;

define( 'WOOSYNC_PLUGIN_VERSION', '0.1.0' );
define( 'WOOSYNC_PLUGIN_FILE', __FILE__ );

require_once __DIR__ . '/includes/class-extension.php';
require_once __DIR__ . '/includes/class-outbox-location.php';
require_once __DIR__ . '/includes/class-wpdb-outbox.php';
require_once __DIR__ . '/includes/class-site-scope.php';
require_once __DIR__ . '/includes/class-secret-store.php';
require_once __DIR__ . '/includes/class-loop-guard.php';
require_once __DIR__ . '/includes/class-fallback-queue.php';
require_once __DIR__ . '/includes/class-dispatcher.php';
require_once __DIR__ . '/includes/class-snapshots.php';
require_once __DIR__ . '/includes/class-resource-lock.php';
require_once __DIR__ . '/includes/class-product-hooks.php';
require_once __DIR__ . '/includes/class-order-hooks.php';
require_once __DIR__ . '/includes/class-customer-hooks.php';
require_once __DIR__ . '/includes/class-endpoint-sync.php';
require_once __DIR__ . '/includes/class-wc-webhooks.php';
require_once __DIR__ . '/includes/class-settings.php';
require_once __DIR__ . '/includes/class-admin-notices.php';
require_once __DIR__ . '/includes/class-privacy.php';
require_once __DIR__ . '/includes/class-metrics-endpoint.php';
require_once __DIR__ . '/includes/class-site-health.php';
require_once __DIR__ . '/includes/class-plugin.php';
if ( is_readable( __DIR__ . '/includes/class-log-page.php' ) ) {
	require_once __DIR__ . '/includes/class-log-page.php';
}

if ( ! function_exists( 'woosync_suppress' ) ) {
	/**
	 * Runs $callback without echoing the changes it makes back to the CRM.
	 *
	 * Use it in code that applies CRM-originated writes (an inbound webhook handler, an import):
	 * WooCommerce hooks fired inside the callback dispatch nothing.
	 *
	 * @param callable $callback Code to run.
	 * @return mixed Whatever $callback returns.
	 */
	function woosync_suppress( callable $callback ) {
		return \Woosync\Plugin::instance()->loop_guard()->suppress( $callback );
	}
}

register_activation_hook( __FILE__, array( \Woosync\Plugin::class, 'activate' ) );
register_deactivation_hook( __FILE__, array( \Woosync\Plugin::class, 'deactivate' ) );

\Woosync\Plugin::instance()->register();
