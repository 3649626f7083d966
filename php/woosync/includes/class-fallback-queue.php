<?php
/**
 * A small capped table for events the extension could not take.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Keeps topic, key and snapshot of events that could not be dispatched (extension missing or
 * dispatch throwing) in `{prefix}woosync_fallback`, and replays them in order through
 * woosync_dispatch() from WP-Cron once the extension works again.
 *
 * The table is capped (filter `woosync_fallback_cap`, default 1000 rows); events over the cap
 * are counted as dropped, shown by the admin notice and `wp woosync status`, and repaired with
 * `wp woosync reconcile`.
 */
class Fallback_Queue {

	const DB_VERSION_OPTION = 'woosync_fallback_db_version';
	const DB_VERSION        = '1';
	const COUNT_OPTION      = 'woosync_fallback_count';
	const DROPPED_OPTION    = 'woosync_fallback_dropped';
	const CRON_HOOK         = 'woosync_replay_fallback';
	const BATCH             = 200;

	/**
	 * Table name with prefix.
	 *
	 * @return string
	 */
	public static function table() {
		global $wpdb;
		return $wpdb->prefix . 'woosync_fallback';
	}

	/**
	 * Creates or upgrades the table (on activation, and on first use on a site that never ran it).
	 */
	public static function install() {
		global $wpdb;
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		$table   = self::table();
		$collate = $wpdb->get_charset_collate();
		dbDelta(
			"CREATE TABLE {$table} (
				id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
				topic varchar(191) NOT NULL,
				event_key varchar(191) NOT NULL DEFAULT '',
				coalesce_flag tinyint(1) NOT NULL DEFAULT 0,
				payload longtext NOT NULL,
				created_at datetime NOT NULL,
				error text NOT NULL,
				PRIMARY KEY  (id)
			) {$collate};"
		);
		update_option( self::DB_VERSION_OPTION, self::DB_VERSION, true );
	}

	/**
	 * Installs the table when this site does not have it yet.
	 */
	public static function maybe_install() {
		if ( self::DB_VERSION !== get_option( self::DB_VERSION_OPTION ) ) {
			self::install();
		}
	}

	/**
	 * Number of events waiting in the table (cached in an autoloaded option, so the hot path
	 * does not query).
	 *
	 * @return int
	 */
	public function count() {
		return (int) get_option( self::COUNT_OPTION, 0 );
	}

	/**
	 * Number of events dropped because the table was full.
	 *
	 * @return int
	 */
	public function dropped() {
		return (int) get_option( self::DROPPED_OPTION, 0 );
	}

	/**
	 * Forgets the dropped count (after `wp woosync reconcile` repaired the CRM).
	 */
	public function reset_dropped() {
		update_option( self::DROPPED_OPTION, 0, true );
	}

	/**
	 * Keeps one event.
	 *
	 * @param string $topic    Topic.
	 * @param array  $payload  Snapshot.
	 * @param string $key      Ordering key.
	 * @param bool   $coalesce Coalesce flag.
	 * @param string $error    Why it could not be dispatched.
	 * @return bool False when the table is full (the event is counted as dropped) or unusable.
	 */
	public function add( $topic, array $payload, $key, $coalesce, $error ) {
		global $wpdb;
		$cap = (int) apply_filters( 'woosync_fallback_cap', 1000 );
		if ( $this->count() >= $cap ) {
			update_option( self::DROPPED_OPTION, $this->dropped() + 1, true );
			return false;
		}
		$json = wp_json_encode( $payload );
		if ( false === $json ) {
			update_option( self::DROPPED_OPTION, $this->dropped() + 1, true );
			return false;
		}
		$suppress = $wpdb->suppress_errors( true );
		$ok       = $wpdb->insert(
			self::table(),
			array(
				'topic'         => $topic,
				'event_key'     => (string) $key,
				'coalesce_flag' => $coalesce ? 1 : 0,
				'payload'       => $json,
				'created_at'    => gmdate( 'Y-m-d H:i:s' ),
				'error'         => (string) $error,
			),
			array( '%s', '%s', '%d', '%s', '%s', '%s' )
		);
		$wpdb->suppress_errors( $suppress );
		if ( ! $ok ) {
			update_option( self::DROPPED_OPTION, $this->dropped() + 1, true );
			return false;
		}
		update_option( self::COUNT_OPTION, $this->count() + 1, true );
		if ( Extension::loaded() ) {
			self::schedule_soon();
		}
		return true;
	}

	/**
	 * Schedules a replay as soon as WP-Cron runs.
	 */
	public static function schedule_soon() {
		if ( ! wp_next_scheduled( self::CRON_HOOK ) ) {
			wp_schedule_single_event( time(), self::CRON_HOOK );
		}
	}

	/**
	 * Replays waiting events through woosync_dispatch() in order; stops at the first failure so
	 * per-key order is kept. Runs from WP-Cron (and `wp woosync status --replay`).
	 *
	 * @return array{replayed:int,remaining:int,error:string}
	 */
	public function replay() {
		global $wpdb;
		$result = array(
			'replayed'  => 0,
			'remaining' => 0,
			'error'     => '',
		);
		if ( ! Extension::loaded() ) {
			$result['remaining'] = $this->recount();
			$result['error']     = __( 'The woosync PHP extension is not loaded.', 'woosync' );
			return $result;
		}
		$table = self::table();
		do {
			// phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared, WordPress.DB.DirectDatabaseQuery
			$rows = $wpdb->get_results( $wpdb->prepare( "SELECT id, topic, event_key, coalesce_flag, payload FROM {$table} ORDER BY id ASC LIMIT %d", self::BATCH ), ARRAY_A );
			foreach ( (array) $rows as $row ) {
				$payload = json_decode( $row['payload'], true );
				try {
					$options = array( 'coalesce' => (bool) $row['coalesce_flag'] );
					if ( '' !== $row['event_key'] ) {
						$options['key'] = $row['event_key'];
					}
					if ( null !== Site_Scope::dispatch_endpoints() ) {
						$options['endpoints'] = Site_Scope::dispatch_endpoints();
					}
					woosync_dispatch( $row['topic'], is_array( $payload ) ? $payload : array(), $options );
				} catch ( \Throwable $e ) {
					$result['error'] = $e->getMessage();
					break 2;
				}
				$wpdb->delete( $table, array( 'id' => (int) $row['id'] ), array( '%d' ) ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
				++$result['replayed'];
			}
		} while ( ! empty( $rows ) && count( $rows ) === self::BATCH );
		$result['remaining'] = $this->recount();
		if ( $result['remaining'] > 0 && '' === $result['error'] ) {
			self::schedule_soon();
		}
		return $result;
	}

	/**
	 * Recounts the table and stores the count.
	 *
	 * @return int
	 */
	public function recount() {
		global $wpdb;
		$table    = self::table();
		$suppress = $wpdb->suppress_errors( true );
		$n        = (int) $wpdb->get_var( "SELECT COUNT(*) FROM {$table}" ); // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared, WordPress.DB.DirectDatabaseQuery
		$wpdb->suppress_errors( $suppress );
		update_option( self::COUNT_OPTION, $n, true );
		return $n;
	}

	/**
	 * Waiting events about one person (for the privacy exporter and eraser): those of the given
	 * ordering keys (`customer:<id>`, `order:<id>`), and those whose snapshot holds the email
	 * address as a value (compared decoded and case-insensitively: the stored JSON escapes `/` and
	 * non-ASCII characters, so a text search would miss `a/b@example.com`, and a substring match
	 * would wrongly find `b@example.com` in it).
	 *
	 * @param string   $email Email address.
	 * @param string[] $keys  Ordering keys of the person's customer account and orders.
	 * @return array Rows (id, topic, event_key, payload, created_at).
	 */
	public function find_about( $email, array $keys = array() ) {
		global $wpdb;
		$table = self::table();
		$email = strtolower( trim( (string) $email ) );
		$keys  = array_flip( array_map( 'strval', $keys ) );
		$found = array();
		$after = 0;
		do {
			// phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared, WordPress.DB.DirectDatabaseQuery
			$rows = (array) $wpdb->get_results( $wpdb->prepare( "SELECT id, topic, event_key, payload, created_at FROM {$table} WHERE id > %d ORDER BY id LIMIT %d", $after, self::BATCH ), ARRAY_A );
			foreach ( $rows as $row ) {
				$after = (int) $row['id'];
				if ( isset( $keys[ (string) $row['event_key'] ] ) || ( '' !== $email && self::holds( json_decode( (string) $row['payload'], true ), $email ) ) ) {
					$found[] = $row;
				}
			}
		} while ( count( $rows ) === self::BATCH );
		return $found;
	}

	/**
	 * Whether a decoded snapshot has a string value equal to $email (lower case).
	 *
	 * @param mixed  $value Decoded JSON.
	 * @param string $email Email address, lower case.
	 * @return bool
	 */
	private static function holds( $value, $email ) {
		if ( is_string( $value ) ) {
			return strtolower( trim( $value ) ) === $email;
		}
		if ( is_array( $value ) ) {
			foreach ( $value as $item ) {
				if ( self::holds( $item, $email ) ) {
					return true;
				}
			}
		}
		return false;
	}

	/**
	 * Deletes waiting events by id.
	 *
	 * @param int[] $ids Row ids.
	 * @return int Rows deleted.
	 */
	public function delete( array $ids ) {
		global $wpdb;
		$n = 0;
		foreach ( $ids as $id ) {
			$n += (int) $wpdb->delete( self::table(), array( 'id' => (int) $id ), array( '%d' ) ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
		}
		$this->recount();
		return $n;
	}
}
