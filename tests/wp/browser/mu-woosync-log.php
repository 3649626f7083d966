<?php
/**
 * Plugin Name: WooSync log page (test loader)
 * Description: Loads the WooSync log page for the browser test until the plugin's bootstrap calls
 *              \Woosync\Log_Page::register() itself; then this does nothing.
 *
 * Copied into the test site's wp-content/mu-plugins by tests/test_admin_log.py.
 *
 * @package Woosync
 */

add_action(
	'plugins_loaded',
	function () {
		if ( ! class_exists( 'Woosync\\Log_Page' ) ) {
			require_once WP_PLUGIN_DIR . '/woosync/includes/class-log-page.php';
		}
		if ( ! has_action( 'admin_menu', array( 'Woosync\\Log_Page', 'add_menu' ) ) ) {
			\Woosync\Log_Page::register();
		}
	},
	20
);
