<?php
/**
 * The one place that calls woosync_dispatch().
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Adds the site to the payload, applies the `woosync_payload` and `woosync_should_dispatch`
 * filters and loop prevention, and dispatches. Nothing here ever throws: a failure is recorded
 * for the admin notice and the event goes to the fallback table, so checkout never fails
 * because of woosync.
 */
class Dispatcher {

	const FAILURE_OPTION = 'woosync_last_failure';

	/**
	 * Loop guard.
	 *
	 * @var Loop_Guard
	 */
	private $guard;

	/**
	 * Fallback table.
	 *
	 * @var Fallback_Queue
	 */
	private $fallback;

	/**
	 * Constructor.
	 *
	 * @param Loop_Guard     $guard    Loop guard.
	 * @param Fallback_Queue $fallback Fallback table.
	 */
	public function __construct( Loop_Guard $guard, Fallback_Queue $fallback ) {
		$this->guard    = $guard;
		$this->fallback = $fallback;
	}

	/**
	 * Whether changes made now are suppressed (CRM-originated).
	 *
	 * @return bool
	 */
	public function suppressed() {
		return $this->guard->is_suppressed();
	}

	/**
	 * Dispatches one event.
	 *
	 * @param string      $topic       Topic such as `product.stock_updated`.
	 * @param array       $payload     Snapshot taken at event time (scalars and arrays only).
	 * @param string      $key         Ordering key such as `product:42`.
	 * @param bool        $coalesce    Whether a newer event of the same key and topic supersedes a waiting one.
	 * @param mixed       $subject     The WooCommerce object the snapshot was taken from (for filters).
	 * @param bool        $check_guard False when the caller already checked loop prevention at event time.
	 * @return string|null Event id, or null when not dispatched (vetoed, suppressed, or kept in the fallback table).
	 */
	public function dispatch( $topic, array $payload, $key, $coalesce = false, $subject = null, $check_guard = true ) {
		try {
			if ( $check_guard && $this->guard->is_suppressed() ) {
				return null;
			}
			$payload['site'] = array(
				'url'     => home_url(),
				'blog_id' => get_current_blog_id(),
			);

			/**
			 * Filters the snapshot sent to the CRM.
			 *
			 * @param array  $payload Snapshot (scalars, arrays and stdClass only).
			 * @param string $topic   Topic.
			 * @param mixed  $subject WooCommerce object (WC_Product, WC_Order, WC_Customer) or null.
			 */
			$payload = apply_filters( 'woosync_payload', $payload, $topic, $subject );
			if ( ! is_array( $payload ) ) {
				return null;
			}

			/**
			 * Whether to send this event at all.
			 *
			 * @param bool   $send    Default true.
			 * @param string $topic   Topic.
			 * @param array  $payload Snapshot.
			 * @param mixed  $subject WooCommerce object or null.
			 */
			if ( ! apply_filters( 'woosync_should_dispatch', true, $topic, $payload, $subject ) ) {
				return null;
			}

			if ( ! Extension::loaded() ) {
				$this->fallback->add( $topic, $payload, $key, $coalesce, 'extension not loaded' );
				return null;
			}
			if ( $this->fallback->count() > 0 ) {
				// Older events are still waiting in the fallback table: queue behind them so
				// each key stays in order; WP-Cron replays them all.
				$this->fallback->add( $topic, $payload, $key, $coalesce, 'behind older fallback events' );
				return null;
			}
			$options = array( 'coalesce' => (bool) $coalesce );
			if ( '' !== (string) $key ) {
				$options['key'] = (string) $key;
			}
			$endpoints = Site_Scope::dispatch_endpoints();
			if ( null !== $endpoints ) {
				$options['endpoints'] = $endpoints; // Multisite: never another site's endpoint.
			}
			return woosync_dispatch( $topic, $payload, $options );
		} catch ( \Throwable $e ) {
			$this->record_failure( $e );
			try {
				if ( isset( $payload ) && is_array( $payload ) ) {
					$this->fallback->add( $topic, $payload, $key, $coalesce, $e->getMessage() );
				}
			} catch ( \Throwable $inner ) {
				// The database is failing too: nothing more we can do without breaking the request.
				error_log( 'woosync: could not keep an event in the fallback table: ' . $inner->getMessage() ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions.error_log_error_log
			}
			return null;
		}
	}

	/**
	 * Records a failure that happened before dispatch (e.g. while taking a snapshot).
	 *
	 * @param \Throwable $e Failure.
	 */
	public function report( \Throwable $e ) {
		$this->record_failure( $e );
	}

	/**
	 * Remembers the last dispatch failure for the admin notice and the CLI.
	 *
	 * @param \Throwable $e Failure.
	 */
	private function record_failure( \Throwable $e ) {
		try {
			update_option(
				self::FAILURE_OPTION,
				array(
					'message' => self::short( $e->getMessage() ),
					'class'   => get_class( $e ),
					'time'    => time(),
				),
				true
			);
		} catch ( \Throwable $ignored ) {
			unset( $ignored );
		}
		error_log( 'woosync: dispatch failed: ' . $e->getMessage() ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions.error_log_error_log
	}

	/**
	 * A message cut to 300 bytes (an exception may quote a huge input; this one is kept in an
	 * autoloaded option).
	 *
	 * @param string $message Message.
	 * @return string
	 */
	public static function short( $message ) {
		$message = (string) $message;
		return strlen( $message ) > 300 ? mb_strcut( $message, 0, 300, 'UTF-8' ) . '…' : $message;
	}

	/**
	 * The last dispatch failure, or null.
	 *
	 * @return array|null
	 */
	public static function last_failure() {
		$failure = get_option( self::FAILURE_OPTION );
		return is_array( $failure ) ? $failure : null;
	}

	/**
	 * Forgets the last failure (after a successful replay).
	 */
	public static function clear_failure() {
		delete_option( self::FAILURE_OPTION );
	}
}
