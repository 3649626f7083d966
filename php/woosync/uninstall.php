<?php
/**
 * Uninstall: removes the plugin's options and fallback table on every site. The outbox file (or
 * its `<prefix>woosync_*` tables in the WordPress database) is left in place (it is the record of
 * what was sent, and may hold undelivered events; delete it by hand, see `wp woosync status`).
 *
 * @package Woosync
 */

defined( 'WP_UNINSTALL_PLUGIN' ) || exit;

/**
 * Removes this site's WooSync data.
 */
function woosync_uninstall_site() {
	global $wpdb;
	foreach ( array( 'woosync_settings', 'woosync_outbox_path', 'woosync_endpoint_pushed', 'woosync_last_failure', 'woosync_fallback_db_version', 'woosync_fallback_count', 'woosync_fallback_dropped', 'woosync_metrics_token_hash' ) as $option ) {
		delete_option( $option );
	}
	wp_clear_scheduled_hook( 'woosync_replay_fallback' );
	$wpdb->query( "DROP TABLE IF EXISTS {$wpdb->prefix}woosync_fallback" ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery, WordPress.DB.PreparedSQL.InterpolatedNotPrepared
}

if ( is_multisite() ) {
	foreach ( get_sites( array( 'fields' => 'ids', 'number' => 0 ) ) as $woosync_blog_id ) {
		switch_to_blog( $woosync_blog_id );
		woosync_uninstall_site();
		restore_current_blog();
	}
} else {
	woosync_uninstall_site();
}
delete_site_option( 'woosync_outbox_in_wpdb' );
