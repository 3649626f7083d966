<?php
/**
 * Personal data exporter and eraser.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Tools → Export/Erase Personal Data: finds the events held about a customer (by email) in the
 * outbox (keys `customer:<user id>` and `order:<id>` of orders with that billing email) and in the
 * fallback table (those keys, or the email as a value of the decoded snapshot). The eraser deletes
 * the fallback rows and, through woosync_erase(), the finished outbox events of those keys;
 * pending ones are kept until delivered and reported as retained.
 */
class Privacy {

	const GROUP = 'woosync-events';

	/**
	 * Fallback table.
	 *
	 * @var Fallback_Queue
	 */
	private $fallback;

	/**
	 * Constructor.
	 *
	 * @param Fallback_Queue $fallback Fallback table.
	 */
	public function __construct( Fallback_Queue $fallback ) {
		$this->fallback = $fallback;
	}

	/**
	 * Wires the hooks.
	 */
	public function register() {
		add_filter( 'wp_privacy_personal_data_exporters', array( $this, 'add_exporter' ) );
		add_filter( 'wp_privacy_personal_data_erasers', array( $this, 'add_eraser' ) );
	}

	/**
	 * Registers the exporter.
	 *
	 * @param array $exporters Exporters.
	 * @return array
	 */
	public function add_exporter( $exporters ) {
		$exporters['woosync'] = array(
			'exporter_friendly_name' => __( 'WooSync CRM events', 'woosync' ),
			'callback'               => array( $this, 'export' ),
		);
		return $exporters;
	}

	/**
	 * Registers the eraser.
	 *
	 * @param array $erasers Erasers.
	 * @return array
	 */
	public function add_eraser( $erasers ) {
		$erasers['woosync'] = array(
			'eraser_friendly_name' => __( 'WooSync CRM events', 'woosync' ),
			'callback'             => array( $this, 'erase' ),
		);
		return $erasers;
	}

	/**
	 * Ordering keys of events that concern this email address.
	 *
	 * @param string $email Email address.
	 * @return string[]
	 */
	public function keys_for( $email ) {
		$keys = array();
		$user = get_user_by( 'email', $email );
		if ( $user ) {
			$keys[] = Site_Scope::key( 'customer', $user->ID );
		}
		if ( function_exists( 'wc_get_orders' ) ) {
			$ids = wc_get_orders(
				array(
					'billing_email' => $email,
					'limit'         => -1,
					'return'        => 'ids',
				)
			);
			foreach ( (array) $ids as $id ) {
				$keys[] = Site_Scope::key( 'order', (int) $id );
			}
		}
		if ( '' !== Site_Scope::prefix() && Outbox_Location::per_site() ) {
			// This site's own outbox may still hold events of 0.1, keyed without the site.
			foreach ( $keys as $key ) {
				$keys[] = substr( $key, strlen( Site_Scope::prefix() ) );
			}
		}
		return $keys;
	}

	/**
	 * Outbox events (full, with payload) for these keys.
	 *
	 * @param string[] $keys Keys.
	 * @return array
	 */
	private function outbox_events( array $keys ) {
		if ( ! Extension::has( 'woosync_events' ) || ! Extension::has( 'woosync_event' ) ) {
			return array();
		}
		$events = array();
		foreach ( $keys as $key ) {
			try {
				foreach ( (array) woosync_events( array( 'key' => $key, 'limit' => 1000 ) ) as $row ) {
					$id = (string) ( $row['id'] ?? '' );
					if ( '' !== $id && ! isset( $events[ $id ] ) ) {
						$event = woosync_event( $id );
						if ( is_array( $event ) ) {
							$events[ $id ] = $event;
						}
					}
				}
			} catch ( \Throwable $e ) {
				unset( $e ); // Export what can be read.
			}
		}
		return $events;
	}

	/**
	 * Exporter callback.
	 *
	 * @param string $email Email address.
	 * @param int    $page  Page (everything fits on one).
	 * @return array
	 */
	public function export( $email, $page = 1 ) {
		unset( $page );
		$items = array();
		foreach ( $this->outbox_events( $this->keys_for( $email ) ) as $id => $event ) {
			$items[] = array(
				'group_id'    => self::GROUP,
				'group_label' => __( 'Events sent to the CRM', 'woosync' ),
				'item_id'     => 'woosync-' . $id,
				'data'        => array(
					array( 'name' => __( 'Event', 'woosync' ), 'value' => $id ),
					array( 'name' => __( 'Topic', 'woosync' ), 'value' => (string) $event['topic'] ),
					array( 'name' => __( 'Created', 'woosync' ), 'value' => is_numeric( $event['created_at'] ) ? gmdate( 'c', (int) $event['created_at'] ) : (string) $event['created_at'] ),
					array( 'name' => __( 'Data', 'woosync' ), 'value' => self::readable( Extension::payload( $event ) ) ),
				),
			);
		}
		foreach ( $this->fallback->find_about( $email, $this->keys_for( $email ) ) as $row ) {
			$items[] = array(
				'group_id'    => self::GROUP,
				'group_label' => __( 'Events sent to the CRM', 'woosync' ),
				'item_id'     => 'woosync-fallback-' . $row['id'],
				'data'        => array(
					array( 'name' => __( 'Topic', 'woosync' ), 'value' => (string) $row['topic'] ),
					array( 'name' => __( 'Created', 'woosync' ), 'value' => (string) $row['created_at'] . ' UTC' ),
					array( 'name' => __( 'Data', 'woosync' ), 'value' => self::readable( json_decode( (string) $row['payload'], true ) ) ),
				),
			);
		}
		return array(
			'data' => $items,
			'done' => true,
		);
	}

	/**
	 * A snapshot as JSON a person can read (no `\/`, no `\u00fc` escapes).
	 *
	 * @param mixed $data Decoded snapshot.
	 * @return string
	 */
	private static function readable( $data ) {
		return (string) wp_json_encode( $data, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE );
	}

	/**
	 * Eraser callback.
	 *
	 * @param string $email Email address.
	 * @param int    $page  Page (everything fits on one).
	 * @return array
	 */
	public function erase( $email, $page = 1 ) {
		unset( $page );
		$rows     = $this->fallback->find_about( $email, $this->keys_for( $email ) );
		$removed  = $this->fallback->delete( wp_list_pluck( $rows, 'id' ) );
		$retained = 0;
		$messages = array();
		if ( Extension::has( 'woosync_erase' ) ) {
			foreach ( $this->keys_for( $email ) as $key ) {
				try {
					$result    = woosync_erase( $key );
					$removed  += (int) ( $result['deleted'] ?? 0 );
					$retained += (int) ( $result['pending'] ?? 0 );
				} catch ( \Throwable $e ) {
					/* translators: %s: error message */
					$messages[] = sprintf( __( 'WooSync could not erase its outbox events: %s', 'woosync' ), $e->getMessage() );
				}
			}
			if ( $retained > 0 ) {
				/* translators: %d: number of events */
				$messages[] = sprintf( __( 'WooSync keeps %d events about this customer until they are delivered to the CRM; run the eraser again afterwards. Erase the customer in the CRM as well.', 'woosync' ), $retained );
			}
		} else {
			$retained = count( $this->outbox_events( $this->keys_for( $email ) ) );
			if ( $retained > 0 ) {
				/* translators: %d: number of events */
				$messages[] = sprintf( __( 'WooSync keeps %d events about this customer in its outbox as a record of what was sent to the CRM; "wp woosync purge --older-than=<days>" removes old events. Erase the customer in the CRM as well.', 'woosync' ), $retained );
			}
		}
		return array(
			'items_removed'  => $removed > 0,
			'items_retained' => $retained > 0,
			'messages'       => $messages,
			'done'           => true,
		);
	}
}
