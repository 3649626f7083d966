<?php
/**
 * Uninstall (`wp plugin uninstall woosync`, or Delete on the Plugins page): removes what the plugin
 * created, on every site of a network: its options (settings, sealed secret, outbox path, counters,
 * metrics token hash), transients (the short-lived one holding a new secret, test results, log
 * notices), WP-Cron job, fallback table, the users' screen options for its log, the network's
 * storage setting, and its endpoint (`wordpress`, or `wordpress@<blog_id>` on multisite) in the
 * outbox.
 *
 * The outbox itself is kept (the file, or its `<prefix>woosync_*` tables in the WordPress
 * database): it is the record of what was sent and may hold undelivered events, and when php.ini's
 * `woosync.database` names it, it belongs to the server (other sites or programs may use it).
 * Delete it by hand (see readme.txt and `wp woosync status`).
 *
 * @package Woosync
 */

defined( 'WP_UNINSTALL_PLUGIN' ) || exit;

/**
 * The outbox this site used, or '' (never creates one).
 *
 * @param string $ini `woosync.database` as php.ini set it.
 * @return string
 */
function woosync_uninstall_outbox( $ini ) {
	if ( '' !== $ini ) {
		return str_replace( '{blog_id}', (string) get_current_blog_id(), $ini );
	}
	if ( get_site_option( 'woosync_outbox_in_wpdb', false ) ) {
		// "Store the outbox in the WordPress database": the URL is built from wp-config.php.
		require_once __DIR__ . '/includes/class-extension.php';
		require_once __DIR__ . '/includes/class-outbox-location.php';
		require_once __DIR__ . '/includes/class-wpdb-outbox.php';
		$url = \Woosync\Wpdb_Outbox::url();
		if ( '' !== $url ) {
			return $url;
		}
	}
	if ( defined( 'WOOSYNC_DATABASE' ) && '' !== (string) WOOSYNC_DATABASE ) {
		return str_replace( '{blog_id}', (string) get_current_blog_id(), (string) WOOSYNC_DATABASE );
	}
	return (string) get_option( 'woosync_outbox_path', '' );
}

/**
 * Deletes this site's endpoint from the outbox, when the extension is loaded and the outbox exists.
 *
 * @param string $ini `woosync.database` as php.ini set it.
 */
function woosync_uninstall_endpoint( $ini ) {
	if ( ! function_exists( 'woosync_endpoint_delete' ) || ! function_exists( 'woosync_endpoints' ) ) {
		return;
	}
	$outbox = woosync_uninstall_outbox( $ini );
	if ( '' === $outbox || ( ! preg_match( '#^(mysql|mariadb)://#i', $outbox ) && ! file_exists( $outbox ) ) ) {
		return;
	}
	$names = is_multisite() ? array( 'wordpress@' . get_current_blog_id() ) : array( 'wordpress' );
	try {
		if ( (string) ini_get( 'woosync.database' ) !== $outbox ) {
			ini_set( 'woosync.database', $outbox ); // phpcs:ignore WordPress.PHP.IniSet.Risky
		}
		foreach ( (array) woosync_endpoints() as $endpoint ) {
			if ( is_array( $endpoint ) && in_array( (string) ( $endpoint['name'] ?? '' ), $names, true ) ) {
				woosync_endpoint_delete( (string) $endpoint['name'] );
			}
		}
	} catch ( \Throwable $e ) {
		error_log( 'woosync uninstall: the endpoint could not be removed from ' . $outbox . ': ' . $e->getMessage() ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions.error_log_error_log
	}
}

/**
 * Removes this site's WooSync data.
 *
 * @param string $ini `woosync.database` as php.ini set it.
 */
function woosync_uninstall_site( $ini ) {
	global $wpdb;
	woosync_uninstall_endpoint( $ini );
	foreach ( array( 'woosync_settings', 'woosync_secret', 'woosync_outbox_path', 'woosync_endpoint_pushed', 'woosync_last_failure', 'woosync_fallback_db_version', 'woosync_fallback_count', 'woosync_fallback_dropped', 'woosync_metrics_token_hash' ) as $option ) {
		delete_option( $option );
	}
	// Transients: a new secret shown once (woosync_new_secret_<user>), test results, log notices.
	$wpdb->query( "DELETE FROM {$wpdb->options} WHERE option_name LIKE '\\_transient\\_woosync\\_%' OR option_name LIKE '\\_transient\\_timeout\\_woosync\\_%'" ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
	wp_cache_flush();
	wp_clear_scheduled_hook( 'woosync_replay_fallback' );
	$wpdb->query( "DROP TABLE IF EXISTS {$wpdb->prefix}woosync_fallback" ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery, WordPress.DB.PreparedSQL.InterpolatedNotPrepared
}

// php.ini's value (the plugin, if it ran in this process, may have set this site's own path).
$woosync_ini = '';
if ( function_exists( 'woosync_status' ) ) {
	$woosync_all = ini_get_all( 'woosync' );
	$woosync_ini = (string) ( $woosync_all['woosync.database']['global_value'] ?? ini_get( 'woosync.database' ) );
}
if ( is_multisite() ) {
	foreach ( get_sites(
		array(
			'fields' => 'ids',
			'number' => 0,
		)
	) as $woosync_blog_id ) {
		switch_to_blog( $woosync_blog_id );
		woosync_uninstall_site( $woosync_ini );
		restore_current_blog();
	}
} else {
	woosync_uninstall_site( $woosync_ini );
}
global $wpdb; // uninstall.php runs inside uninstall_plugin(), not at file scope.
// Users' screen options of the log page (user meta is shared by the sites of a network).
$wpdb->query( "DELETE FROM {$wpdb->usermeta} WHERE meta_key = 'woosync_log_per_page' OR meta_key LIKE 'manage%woosync%columnshidden'" ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
delete_site_option( 'woosync_outbox_in_wpdb' );
