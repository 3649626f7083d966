<?php
/**
 * `wp woosync`: the outbox from the command line.
 *
 * @package Woosync
 */

namespace Woosync;

use WP_CLI;
use WP_CLI\Utils;

defined( 'ABSPATH' ) || exit;

/**
 * Inspects and repairs WooSync's delivery of WooCommerce changes to the CRM.
 *
 * ## EXAMPLES
 *
 *     # Health of the outbox and its endpoints
 *     $ wp woosync status
 *
 *     # Dead events, as JSON
 *     $ wp woosync list --status=dead --format=json
 *
 *     # Send the current state of every product to the CRM
 *     $ wp woosync reconcile --products
 */
class CLI_Command {

	const LIST_FIELDS     = array( 'id', 'topic', 'key', 'endpoint', 'state', 'attempts', 'last_status', 'created_at', 'next_attempt_at', 'last_error' );
	const ENDPOINT_FIELDS = array( 'name', 'url', 'enabled', 'disabled_reason', 'topics', 'pending', 'delivered', 'dead', 'consecutive_failures', 'last_success_at', 'last_error' );
	const ATTEMPT_FIELDS  = array( 'endpoint', 'started_at', 'duration_ms', 'http_status', 'error_class', 'error', 'response' );

	/**
	 * Shows the outbox path, endpoints and their health, counts by state, the oldest pending
	 * age, the last error and the last success.
	 *
	 * ## OPTIONS
	 *
	 * [--format=<format>]
	 * : Render output in a particular format.
	 * ---
	 * default: table
	 * options:
	 *   - table
	 *   - json
	 *   - yaml
	 *   - csv
	 * ---
	 *
	 * ## EXAMPLES
	 *
	 *     $ wp woosync status
	 *     $ wp woosync status --format=json
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function status( $args, $assoc_args ) {
		$format   = (string) Utils\get_flag_value( $assoc_args, 'format', 'table' );
		$plugin   = Plugin::instance();
		$fallback = $plugin->fallback();
		$this->require_extension();
		try {
			$status = woosync_status();
		} catch ( \Throwable $e ) {
			WP_CLI::error( sprintf( 'The outbox %s cannot be read: %s', Outbox_Location::current(), $e->getMessage() ) );
			return;
		}
		$failure = Dispatcher::last_failure();
		$summary = array(
			'outbox'             => Wpdb_Outbox::mask( (string) ( $status['database'] ?? Outbox_Location::current() ) ),
			'outbox_chosen_by'   => Outbox_Location::from_template() ? 'php.ini ({blog_id} per site)' : ( Outbox_Location::chosen_by_plugin() ? 'plugin' : 'php.ini' ),
			'outbox_shared'      => Site_Scope::shared_outbox() ? 'yes (every site of the network; this site sees its own events)' : 'no',
			'site_endpoint'      => Endpoint_Sync::name(),
			'secret'             => Secret_Store::state()['state'],
			'version'            => (string) ( $status['version'] ?? Extension::version() ),
			'worker'             => (string) ( $status['worker'] ?? '' ),
			'worker_error'       => (string) ( $status['worker_error'] ?? '' ),
			'pending'            => (int) ( $status['pending'] ?? 0 ),
			'in_flight'          => (int) ( $status['in_flight'] ?? 0 ),
			'delivered'          => (int) ( $status['delivered'] ?? 0 ),
			'dead'               => (int) ( $status['dead'] ?? 0 ),
			'superseded'         => (int) ( $status['superseded'] ?? 0 ),
			'unrouted'           => (int) ( $status['unrouted'] ?? 0 ),
			'oldest_pending_age' => isset( $status['oldest_pending_age'] ) ? round( (float) $status['oldest_pending_age'], 1 ) : null,
			'last_error'         => (string) ( $status['last_error'] ?? '' ),
			'last_success_at'    => self::time( $status['last_success_at'] ?? null ),
			'fallback_waiting'   => $fallback->count(),
			'fallback_dropped'   => $fallback->dropped(),
			'dispatch_failure'   => $failure ? (string) $failure['message'] : '',
			'notices'            => implode( ' | ', array_filter( array_map( 'strval', (array) ( $status['notices'] ?? array() ) ) ) ),
		);
		$endpoints = array();
		foreach ( (array) ( $status['endpoints'] ?? array() ) as $endpoint ) {
			if ( Site_Scope::owns_endpoint( (string) ( $endpoint['name'] ?? '' ) ) ) {
				$endpoints[] = self::endpoint_row( (array) $endpoint );
			}
		}

		if ( 'json' === $format ) {
			$summary['notices']   = array_values( array_map( 'strval', (array) ( $status['notices'] ?? array() ) ) );
			$summary['endpoints'] = $endpoints;
			WP_CLI::line( (string) wp_json_encode( $summary, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES ) );
		} else {
			$rows = array();
			foreach ( $summary as $field => $value ) {
				$rows[] = array(
					'field' => $field,
					'value' => null === $value ? '' : (string) $value,
				);
			}
			Utils\format_items( $format, $rows, array( 'field', 'value' ) );
			if ( 'table' === $format ) {
				WP_CLI::line( 'Endpoints:' );
			}
			if ( $endpoints ) {
				Utils\format_items( $format, $endpoints, self::ENDPOINT_FIELDS );
			} elseif ( 'table' === $format ) {
				WP_CLI::line( '(none: set a CRM URL under Settings → WooSync or woosync.endpoint in php.ini)' );
			}
		}
		foreach ( $plugin->notices()->messages() as $message ) {
			WP_CLI::warning( $message[1] );
		}
	}

	/**
	 * Lists events (one row per event and endpoint), newest first.
	 *
	 * ## OPTIONS
	 *
	 * [--status=<status>]
	 * : Only deliveries in this state.
	 * ---
	 * options:
	 *   - pending
	 *   - queued
	 *   - in_flight
	 *   - delivered
	 *   - dead
	 *   - superseded
	 *   - unrouted
	 * ---
	 *
	 * [--topic=<topic>]
	 * : Only this topic, e.g. order.created.
	 *
	 * [--key=<key>]
	 * : Only this ordering key, e.g. product:42.
	 *
	 * [--endpoint=<name>]
	 * : Only this endpoint (`wordpress` is the plugin's, `default` the php.ini one).
	 *
	 * [--since=<date>]
	 * : Only events created since this date (anything strtotime() understands).
	 *
	 * [--limit=<n>]
	 * : How many rows.
	 * ---
	 * default: 50
	 * ---
	 *
	 * [--format=<format>]
	 * : Render output in a particular format.
	 * ---
	 * default: table
	 * options:
	 *   - table
	 *   - json
	 *   - yaml
	 *   - csv
	 *   - ids
	 *   - count
	 * ---
	 *
	 * ## EXAMPLES
	 *
	 *     $ wp woosync list --status=dead
	 *     $ wp woosync list --key=order:123 --format=json
	 *
	 * @subcommand list
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function list_( $args, $assoc_args ) {
		$this->require_extension();
		$filter = array( 'limit' => self::count_flag( $assoc_args, 'limit', 50, 0 ) );
		foreach ( array( 'status', 'topic', 'key', 'endpoint' ) as $name ) {
			if ( isset( $assoc_args[ $name ] ) && '' !== (string) $assoc_args[ $name ] ) {
				$filter[ $name ] = (string) $assoc_args[ $name ];
			}
		}
		if ( isset( $filter['key'] ) ) {
			$filter['key'] = Site_Scope::user_key( $filter['key'] );
		}
		if ( isset( $filter['endpoint'] ) ) {
			self::check_endpoint_name( $filter['endpoint'] );
		}
		if ( isset( $filter['endpoint'] ) && ! Site_Scope::owns_endpoint( $filter['endpoint'] ) ) {
			WP_CLI::error( sprintf( 'Endpoint "%s" belongs to another site of the network.', $filter['endpoint'] ) );
		}
		$filter = Site_Scope::events_filter( $filter );
		if ( isset( $assoc_args['since'] ) ) {
			$since = strtotime( (string) $assoc_args['since'] );
			if ( false === $since ) {
				WP_CLI::error( sprintf( 'Cannot read the date "%s".', self::quote( $assoc_args['since'] ) ) );
			}
			$filter['since'] = $since;
		}
		try {
			$rows = woosync_events( $filter );
		} catch ( \Throwable $e ) {
			WP_CLI::error( $e->getMessage() );
			return;
		}
		$items = array();
		foreach ( (array) $rows as $row ) {
			$row['created_at']      = self::time( $row['created_at'] ?? null );
			$row['next_attempt_at'] = self::time( $row['next_attempt_at'] ?? null );
			$items[]                = $row;
		}
		$format = (string) Utils\get_flag_value( $assoc_args, 'format', 'table' );
		if ( 'ids' === $format ) {
			WP_CLI::line( implode( ' ', array_unique( wp_list_pluck( $items, 'id' ) ) ) );
			return;
		}
		if ( 'count' === $format ) {
			WP_CLI::line( (string) count( $items ) );
			return;
		}
		Utils\format_items( $format, $items, self::LIST_FIELDS );
	}

	/**
	 * Shows one event: its payload (pretty JSON), its deliveries and every attempt.
	 *
	 * ## OPTIONS
	 *
	 * <id>
	 * : Event id (evt_…).
	 *
	 * [--format=<format>]
	 * : Render output in a particular format.
	 * ---
	 * default: table
	 * options:
	 *   - table
	 *   - json
	 *   - yaml
	 *   - csv
	 * ---
	 *
	 * ## EXAMPLES
	 *
	 *     $ wp woosync show evt_01JD0000000000000000000000
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function show( $args, $assoc_args ) {
		$this->require_extension();
		$id = (string) ( $args[0] ?? '' );
		self::check_event_id( $id );
		try {
			$event = Site_Scope::event( $id );
		} catch ( \Throwable $e ) {
			WP_CLI::error( $e->getMessage() );
			return;
		}
		if ( null === $event ) {
			WP_CLI::error( sprintf( 'No event %s in %s.', $id, Outbox_Location::current() ) );
			return;
		}
		$event['payload'] = Extension::payload( $event );
		$logged           = Extension::logged_attempts( $event );
		foreach ( (array) ( $event['deliveries'] ?? array() ) as $i => $delivery ) {
			// Attempts logged (a retried delivery keeps counting its earlier attempts).
			$event['deliveries'][ $i ]['attempts'] = $logged[ (string) ( $delivery['endpoint'] ?? '' ) ] ?? 0;
		}
		$format           = (string) Utils\get_flag_value( $assoc_args, 'format', 'table' );
		if ( 'json' === $format ) {
			WP_CLI::line( (string) wp_json_encode( $event, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE ) );
			return;
		}
		$attempts = array();
		foreach ( (array) ( $event['attempts'] ?? array() ) as $attempt ) {
			$attempt['started_at'] = self::time( $attempt['started_at'] ?? null );
			$attempts[]            = $attempt;
		}
		if ( 'table' !== $format ) {
			Utils\format_items( $format, $attempts, self::ATTEMPT_FIELDS );
			return;
		}
		WP_CLI::line( sprintf( 'Event:    %s', $event['id'] ) );
		WP_CLI::line( sprintf( 'Topic:    %s', $event['topic'] ) );
		WP_CLI::line( sprintf( 'Key:      %s', (string) ( $event['key'] ?? '' ) ) );
		WP_CLI::line( sprintf( 'Sequence: %s', (string) ( $event['sequence'] ?? '' ) ) );
		WP_CLI::line( sprintf( 'Created:  %s', self::time( $event['created_at'] ?? null ) ) );
		WP_CLI::line( 'Payload:' );
		WP_CLI::line( (string) wp_json_encode( $event['payload'] ?? null, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES ) );
		WP_CLI::line( 'Deliveries:' );
		$deliveries = array();
		foreach ( (array) ( $event['deliveries'] ?? array() ) as $delivery ) {
			$delivery['next_attempt_at'] = self::time( $delivery['next_attempt_at'] ?? null );
			$delivery['updated_at']      = self::time( $delivery['updated_at'] ?? null );
			$deliveries[]                = $delivery;
		}
		if ( $deliveries ) {
			Utils\format_items( 'table', $deliveries, array( 'endpoint', 'state', 'attempts', 'next_attempt_at', 'last_status', 'last_error', 'updated_at' ) );
		} else {
			WP_CLI::line( '(none: no endpoint took this event)' );
		}
		WP_CLI::line( 'Attempts:' );
		if ( $attempts ) {
			Utils\format_items( 'table', $attempts, self::ATTEMPT_FIELDS );
		} else {
			WP_CLI::line( '(none yet)' );
		}
	}

	/**
	 * Puts events back to pending (same id): the given ones, or every dead one.
	 *
	 * ## OPTIONS
	 *
	 * [<id>...]
	 * : Event ids to requeue (dead ones are retried, delivered ones replayed).
	 *
	 * [--dead]
	 * : Requeue every dead delivery.
	 *
	 * [--endpoint=<name>]
	 * : With --dead: only this endpoint's.
	 *
	 * ## EXAMPLES
	 *
	 *     $ wp woosync retry evt_01JD0000000000000000000000
	 *     $ wp woosync retry --dead
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function retry( $args, $assoc_args ) {
		$this->require_extension();
		try {
			if ( Utils\get_flag_value( $assoc_args, 'dead', false ) ) {
				$endpoint = isset( $assoc_args['endpoint'] ) ? (string) $assoc_args['endpoint'] : null;
				if ( null !== $endpoint ) {
					self::check_endpoint_name( $endpoint );
				}
				$n = Site_Scope::retry_dead( $endpoint );
				WP_CLI::success( sprintf( 'Requeued %d dead deliveries.', $n ) );
				return;
			}
			if ( empty( $args ) ) {
				WP_CLI::error( 'Give event ids, or --dead.' );
			}
			$requeued = 0;
			foreach ( $args as $id ) {
				self::check_event_id( (string) $id );
			}
			foreach ( $args as $id ) {
				if ( Site_Scope::retry( (string) $id ) ) {
					++$requeued;
				} else {
					WP_CLI::warning( sprintf( '%s: unknown, or nothing to requeue.', $id ) );
				}
			}
		} catch ( \Throwable $e ) {
			WP_CLI::error( $e->getMessage() );
			return;
		}
		if ( 0 === $requeued ) {
			WP_CLI::error( 'Nothing was requeued.' );
		}
		WP_CLI::success( sprintf( 'Requeued %d of %d events.', $requeued, count( $args ) ) );
	}

	/**
	 * Sends a signed `woosync.test` event and waits for its result.
	 *
	 * ## OPTIONS
	 *
	 * [--endpoint=<name>]
	 * : Only this endpoint (default: every endpoint that takes the event).
	 *
	 * [--timeout=<seconds>]
	 * : How long to wait for the result.
	 * ---
	 * default: 15
	 * ---
	 *
	 * ## EXAMPLES
	 *
	 *     $ wp woosync test
	 *     $ wp woosync test --endpoint=wordpress
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function test( $args, $assoc_args ) {
		$this->require_extension();
		$endpoint = isset( $assoc_args['endpoint'] ) ? (string) $assoc_args['endpoint'] : null;
		if ( null !== $endpoint ) {
			self::check_endpoint_name( $endpoint );
		}
		$timeout  = Utils\get_flag_value( $assoc_args, 'timeout', 15 );
		if ( ! is_numeric( $timeout ) || (float) $timeout <= 0 || (float) $timeout > 3600 ) {
			WP_CLI::error( sprintf( '--timeout must be a number of seconds between 0 and 3600, not "%s".', self::quote( $timeout ) ) );
		}
		$result = Settings::send_test( $endpoint, (float) $timeout );
		if ( ! $result['ok'] ) {
			WP_CLI::error( $result['message'] );
		}
		WP_CLI::success( $result['message'] );
	}

	/**
	 * Sends the current state of products (and recent orders) so the CRM can repair drift, for
	 * example after events were dropped from the fallback table, or after a PHP process was killed
	 * before the end of a request (order events are sent then: see "Orders" in the README).
	 *
	 * Products go out as `product.stock_updated`, orders as `order.updated`, both with
	 * `"reconcile": true` and coalesced per key; draft orders (checkout-draft) are skipped. Without
	 * --products or --orders, both are sent.
	 *
	 * ## OPTIONS
	 *
	 * [--products]
	 * : Every product and variation.
	 *
	 * [--orders]
	 * : Orders modified since --since (not drafts).
	 *
	 * [--since=<date>]
	 * : With --orders: oldest modification date (strtotime() format).
	 * ---
	 * default: 30 days ago
	 * ---
	 *
	 * [--batch-size=<n>]
	 * : Objects loaded per query.
	 * ---
	 * default: 100
	 * ---
	 *
	 * ## EXAMPLES
	 *
	 *     $ wp woosync reconcile --products
	 *     $ wp woosync reconcile --orders --since=2024-01-01
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function reconcile( $args, $assoc_args ) {
		$this->require_extension();
		if ( ! function_exists( 'wc_get_products' ) || ! function_exists( 'wc_get_orders' ) ) {
			WP_CLI::error( 'WooCommerce is not active.' );
		}
		$plugin   = Plugin::instance();
		$replayed = $plugin->fallback()->replay();
		if ( $replayed['remaining'] > 0 ) {
			WP_CLI::error( sprintf( '%d events in the fallback table cannot be replayed: %s', $replayed['remaining'], $replayed['error'] ) );
		}
		$products = (bool) Utils\get_flag_value( $assoc_args, 'products', false );
		$orders   = (bool) Utils\get_flag_value( $assoc_args, 'orders', false );
		if ( ! $products && ! $orders ) {
			$products = true;
			$orders   = true;
		}
		$batch = self::count_flag( $assoc_args, 'batch-size', 100, 1 );
		$sent  = array(
			'products'   => 0,
			'variations' => 0,
			'orders'     => 0,
			'failed'     => 0,
		);

		if ( $products ) {
			$query = array(
				'type'     => array_merge( array_keys( wc_get_product_types() ), array( 'variation' ) ),
				'status'   => array( 'publish', 'private', 'draft', 'pending' ),
				'limit'    => $batch,
				'orderby'  => 'ID',
				'order'    => 'ASC',
				'paginate' => true,
			);
			$page    = 1;
			$first   = wc_get_products( $query + array( 'page' => 1 ) );
			$total   = (int) $first->total;
			$bar     = Utils\make_progress_bar( 'Reconciling products', $total );
			$results = $first;
			while ( true ) {
				foreach ( $results->products as $product ) {
					$payload              = Snapshots::product( $product );
					$payload['reconcile'] = true;
					$id                   = $plugin->dispatcher()->dispatch( 'product.stock_updated', $payload, Site_Scope::key( 'product', $product->get_id() ), true, $product );
					if ( null === $id ) {
						++$sent['failed'];
					} elseif ( $product->is_type( 'variation' ) ) {
						++$sent['variations'];
					} else {
						++$sent['products'];
					}
					$bar->tick();
				}
				++$page;
				if ( $page > (int) $results->max_num_pages ) {
					break;
				}
				$results = wc_get_products( $query + array( 'page' => $page ) );
			}
			$bar->finish();
		}

		if ( $orders ) {
			$since = strtotime( (string) Utils\get_flag_value( $assoc_args, 'since', '30 days ago' ) );
			if ( false === $since ) {
				WP_CLI::error( sprintf( 'Cannot read the date "%s".', self::quote( $assoc_args['since'] ) ) );
			}
			// Every order status except drafts (a checkout-draft is not an order yet: the hooks send
			// nothing for it either).
			$statuses = array_values(
				array_filter(
					array_keys( wc_get_order_statuses() ),
					function ( $status ) {
						return ! in_array( preg_replace( '/^wc-/', '', $status ), Order_Hooks::DRAFT_STATUSES, true );
					}
				)
			);
			$query   = array(
				'type'          => 'shop_order',
				'status'        => $statuses,
				'date_modified' => '>=' . $since,
				'limit'         => $batch,
				'orderby'       => 'ID',
				'order'         => 'ASC',
				'paginate'      => true,
			);
			$page    = 1;
			$results = wc_get_orders( $query + array( 'page' => 1 ) );
			$bar     = Utils\make_progress_bar( 'Reconciling orders', (int) $results->total );
			while ( true ) {
				foreach ( $results->orders as $order ) {
					$payload              = Snapshots::order( $order );
					$payload['reconcile'] = true;
					$id                   = $plugin->dispatcher()->dispatch( 'order.updated', $payload, Site_Scope::key( 'order', $order->get_id() ), true, $order );
					if ( null === $id ) {
						++$sent['failed'];
					} else {
						++$sent['orders'];
					}
					$bar->tick();
				}
				++$page;
				if ( $page > (int) $results->max_num_pages ) {
					break;
				}
				$results = wc_get_orders( $query + array( 'page' => $page ) );
			}
			$bar->finish();
		}

		$summary = sprintf( 'Reconciled %d products, %d variations and %d orders.', $sent['products'], $sent['variations'], $sent['orders'] );
		if ( $sent['failed'] > 0 ) {
			WP_CLI::error( sprintf( '%s %d could not be dispatched (see "wp woosync status").', $summary, $sent['failed'] ) );
		}
		if ( $products && $orders ) {
			$plugin->fallback()->reset_dropped();
		}
		WP_CLI::success( $summary );
	}

	/**
	 * Deletes delivered, dead and superseded events older than a number of days.
	 *
	 * ## OPTIONS
	 *
	 * [--older-than=<days>]
	 * : Age in days.
	 * ---
	 * default: 30
	 * ---
	 *
	 * [--network]
	 * : On a multisite network whose sites share one outbox: purge every site's old events.
	 *
	 * ## EXAMPLES
	 *
	 *     $ wp woosync purge --older-than=7
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function purge( $args, $assoc_args ) {
		$this->require_extension();
		if ( ! Extension::has( 'woosync_purge' ) ) {
			WP_CLI::error( 'This woosync extension has no woosync_purge(); update the extension.' );
		}
		$days = self::count_flag( $assoc_args, 'older-than', 30, 0 );
		if ( Site_Scope::shared_outbox() && ! Utils\get_flag_value( $assoc_args, 'network', false ) ) {
			WP_CLI::error( 'This outbox is shared by every site of the network: purging deletes old events of all of them. Run it again with --network to do that.' );
		}
		try {
			$n = woosync_purge( (int) $days );
		} catch ( \Throwable $e ) {
			WP_CLI::error( $e->getMessage() );
			return;
		}
		WP_CLI::success( sprintf( 'Purged %d events older than %d days.', $n, (int) $days ) );
	}

	/**
	 * A whole-number flag (`--limit=20`): its value, or a clear error (exit 1) for anything that
	 * is not a whole number of at least $min.
	 *
	 * @param array  $assoc_args Options.
	 * @param string $name       Flag name.
	 * @param int    $default    Default.
	 * @param int    $min        Smallest value accepted.
	 * @return int
	 */
	private static function count_flag( array $assoc_args, $name, $default, $min ) {
		$value = Utils\get_flag_value( $assoc_args, $name, $default );
		if ( is_int( $value ) ) {
			$text = (string) $value;
		} elseif ( is_string( $value ) ) {
			$text = trim( $value );
		} else {
			$text = '';
		}
		if ( ! preg_match( '/^\d{1,9}$/', $text ) || (int) $text < $min ) {
			WP_CLI::error( sprintf( '--%1$s must be a number (a whole number, at least %2$d), not "%3$s".', $name, $min, self::quote( $value ) ) );
		}
		return (int) $text;
	}

	/**
	 * Halts (exit 1) unless $id looks like an event id (`evt_` and letters or digits).
	 *
	 * @param string $id Event id.
	 */
	private static function check_event_id( $id ) {
		if ( ! preg_match( '/^evt_[0-9A-Za-z]{10,40}$/', $id ) ) {
			WP_CLI::error( sprintf( '"%s" is not an event id (evt_ followed by letters and digits, as "wp woosync list" shows).', self::quote( $id ) ) );
		}
	}

	/**
	 * Halts (exit 1) unless $name is a valid endpoint name.
	 *
	 * @param string $name Endpoint name.
	 */
	private static function check_endpoint_name( $name ) {
		if ( ! preg_match( '/^[a-z0-9_@-]{1,64}$/', $name ) ) {
			WP_CLI::error( sprintf( '"%s" is not an endpoint name (lower-case letters, digits, _, - and @; see "wp woosync status").', self::quote( $name ) ) );
		}
	}

	/**
	 * A user's input for an error message: at most 100 bytes, control characters shown as `?`.
	 *
	 * @param mixed $value Input.
	 * @return string
	 */
	private static function quote( $value ) {
		$text = is_scalar( $value ) ? (string) $value : gettype( $value );
		$text = (string) preg_replace( '/[\x00-\x1f\x7f]/', '?', $text );
		return strlen( $text ) > 100 ? mb_strcut( $text, 0, 100, 'UTF-8' ) . '…' : $text;
	}

	/**
	 * Halts with a helpful error when the extension is missing.
	 */
	private function require_extension() {
		if ( Extension::loaded() ) {
			return;
		}
		$fallback = Plugin::instance()->fallback();
		WP_CLI::error(
			sprintf(
				'The woosync PHP extension is not loaded in this PHP (%s). Events are kept in the fallback table: %d waiting, %d dropped. Add "extension=/path/to/libwoosync.so" to the php.ini that `php --ini` lists.',
				PHP_BINARY,
				$fallback->count(),
				$fallback->dropped()
			)
		);
	}

	/**
	 * An endpoint status row for output.
	 *
	 * @param array $endpoint Endpoint from woosync_status().
	 * @return array
	 */
	private static function endpoint_row( array $endpoint ) {
		$row = array();
		foreach ( self::ENDPOINT_FIELDS as $field ) {
			$value = $endpoint[ $field ] ?? null;
			if ( 'topics' === $field ) {
				$value = $value ? implode( ',', (array) $value ) : '*';
			} elseif ( 'enabled' === $field ) {
				$value = $value ? 'yes' : 'no';
			} elseif ( 'last_success_at' === $field ) {
				$value = self::time( $value );
			}
			$row[ $field ] = null === $value ? '' : $value;
		}
		return $row;
	}

	/**
	 * A time for output: unix seconds become `Y-m-d H:i:s` (UTC), RFC 3339 strings from the
	 * extension are shown as they are, anything else as ''.
	 *
	 * @param mixed $time Time.
	 * @return string
	 */
	private static function time( $time ) {
		if ( is_numeric( $time ) && $time > 0 ) {
			return gmdate( 'Y-m-d H:i:s', (int) $time );
		}
		return is_string( $time ) ? $time : '';
	}
}
