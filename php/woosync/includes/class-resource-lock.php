<?php
/**
 * One request at a time reads a resource and dispatches its snapshot.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Why: two requests change the same product (two checkouts of one SKU). Request A reads the
 * product (stock 5), request B changes it (stock 4), reads it and dispatches; then A dispatches
 * what it read. The outbox keeps the order of the dispatches per key, so the CRM's last word is
 * A's stale 5 while the shop has 4. WooCommerce's own stock code adds to this: it computes the
 * new stock from a read taken before its UPDATE, so two concurrent decrements can both report
 * the same figure.
 *
 * The fix: "read the resource, dispatch it" runs under a database lock named after the
 * resource's ordering key (MySQL/MariaDB GET_LOCK on WordPress's own connection, so every web
 * server of the shop shares it), with the request's cached copy dropped first. Whoever reads
 * later dispatches later, and the last dispatch carries what the database holds.
 *
 * The lock is taken for milliseconds; a request that cannot get it within WAIT seconds (filter
 * `woosync_resource_lock_wait`), or a database without GET_LOCK, dispatches anyway: an event is
 * never dropped for the lock's sake.
 * Re-entrant within a request; the server releases a lock whose connection goes away.
 */
class Resource_Lock {

	/** Seconds to wait for the lock. */
	const WAIT = 5;

	/**
	 * Lock names this request holds (name => true).
	 *
	 * @var array
	 */
	private static $held = array();

	/**
	 * Runs $fn holding the lock of ordering key $key.
	 *
	 * @param string   $key Ordering key (`product:12`, with the multisite prefix where there is one).
	 * @param callable $fn  Reads the resource and dispatches.
	 * @return mixed What $fn returns.
	 */
	public static function run( $key, callable $fn ) {
		$name = self::name( (string) $key );
		if ( isset( self::$held[ $name ] ) ) {
			return $fn();
		}
		$got = self::acquire( $name );
		if ( $got ) {
			self::$held[ $name ] = true;
		}
		try {
			return $fn();
		} finally {
			if ( $got ) {
				unset( self::$held[ $name ] );
				self::release( $name );
			}
		}
	}

	/**
	 * Drops this request's cached copy of a resource, so that the next read comes from the
	 * database (the object cache of this request may hold what was read before another request
	 * changed it). Targeted deletes only: no `last_changed` bump that would empty a persistent
	 * object cache's query caches for the whole site.
	 *
	 * @param string $resource `order`, `product`, `coupon` or `customer`.
	 * @param int    $id       Its id.
	 */
	public static function forget_cached( $resource, $id ) {
		$id = absint( $id );
		if ( ! $id ) {
			return;
		}
		if ( 'customer' === $resource ) {
			wp_cache_delete( $id, 'users' );
			wp_cache_delete( $id, 'user_meta' );
			return;
		}
		wp_cache_delete( $id, 'posts' );
		wp_cache_delete( $id, 'post_meta' );
		// WooCommerce's object caches: orders (HPOS), and product objects (the product instance
		// cache, on for shops installed with WooCommerce 10 or later), which hold whatever was read
		// earlier in this request.
		$cache = 'order' === $resource ? '\Automattic\WooCommerce\Caches\OrderCache'
			: ( 'product' === $resource ? '\Automattic\WooCommerce\Internal\Caches\ProductCache' : '' );
		if ( '' !== $cache && function_exists( 'wc_get_container' ) && class_exists( $cache ) ) {
			try {
				wc_get_container()->get( ltrim( $cache, '\\' ) )->remove( $id );
			} catch ( \Throwable $e ) {
				unset( $e ); // Not available in this WooCommerce: nothing cached there to drop.
			}
		}
	}

	/**
	 * The server-wide lock name: the database and the key, hashed to fit MySQL's 64 characters.
	 *
	 * @param string $key Ordering key.
	 * @return string
	 */
	private static function name( $key ) {
		global $wpdb;
		$db = defined( 'DB_NAME' ) ? DB_NAME : '';
		return 'woosync:' . md5( $db . '|' . ( $wpdb->base_prefix ?? '' ) . '|' . $key );
	}

	/**
	 * GET_LOCK on WordPress's connection.
	 *
	 * @param string $name Lock name.
	 * @return bool Whether it is held now.
	 */
	private static function acquire( $name ) {
		global $wpdb;
		if ( ! is_object( $wpdb ) || ! method_exists( $wpdb, 'get_var' ) ) {
			return false;
		}
		/**
		 * Seconds a request waits for another request's read-and-dispatch of the same resource
		 * before it dispatches without the lock.
		 *
		 * @param int $seconds Default 5.
		 */
		$wait  = max( 0, (int) apply_filters( 'woosync_resource_lock_wait', self::WAIT ) );
		$quiet = $wpdb->suppress_errors( true );
		try {
			return '1' === (string) $wpdb->get_var( $wpdb->prepare( 'SELECT GET_LOCK(%s, %d)', $name, $wait ) );
		} finally {
			$wpdb->suppress_errors( $quiet );
		}
	}

	/**
	 * RELEASE_LOCK on WordPress's connection.
	 *
	 * @param string $name Lock name.
	 */
	private static function release( $name ) {
		global $wpdb;
		$quiet = $wpdb->suppress_errors( true );
		try {
			$wpdb->query( $wpdb->prepare( 'SELECT RELEASE_LOCK(%s)', $name ) );
		} finally {
			$wpdb->suppress_errors( $quiet );
		}
	}
}
