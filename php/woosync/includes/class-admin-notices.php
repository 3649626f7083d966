<?php
/**
 * Admin notices: woosync is never silently broken.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Tells administrators what is wrong and how to fix it: extension missing, dispatch failing,
 * events waiting in or dropped from the fallback table, an endpoint disabled (410) or failing.
 */
class Admin_Notices {

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
		add_action( 'admin_notices', array( $this, 'render' ) );
		add_action( 'network_admin_notices', array( $this, 'render' ) );
	}

	/**
	 * The notices that apply now, as [type, message] pairs (also used by `wp woosync status`).
	 *
	 * @return array<int, array{0:string,1:string}>
	 */
	public function messages() {
		$out      = array();
		$kept     = $this->fallback->count();
		$dropped  = $this->fallback->dropped();
		$settings_url = admin_url( 'options-general.php?page=' . Settings::PAGE );

		if ( ! Extension::loaded() ) {
			$out[] = array(
				'error',
				sprintf(
					/* translators: 1: events waiting, 2: events dropped */
					__( 'WooSync: the woosync PHP extension is not loaded, so changes are not sent to your CRM. The site keeps working; %1$d events are kept in the fallback table and will be sent once the extension works (%2$d dropped because the table was full). Fix: install libwoosync.so and add "extension=/path/to/libwoosync.so" to php.ini (or a conf.d file) for both PHP-FPM and the CLI, then restart PHP-FPM.', 'woosync' ),
					$kept,
					$dropped
				),
			);
		} else {
			$failure = Dispatcher::last_failure();
			if ( $failure && $kept > 0 ) {
				$out[] = array(
					'error',
					sprintf(
						/* translators: 1: error message, 2: events waiting, 3: events dropped */
						__( 'WooSync: storing events in the outbox fails: %1$s. %2$d events are kept in the fallback table and replayed by WP-Cron once this is fixed (%3$d dropped). Check that PHP can write the outbox file (see "wp woosync status").', 'woosync' ),
						(string) $failure['message'],
						$kept,
						$dropped
					),
				);
			} elseif ( $kept > 0 ) {
				/* translators: %d: events waiting */
				$out[] = array( 'warning', sprintf( __( 'WooSync: %d events are waiting in the fallback table; WP-Cron replays them shortly.', 'woosync' ), $kept ) );
			}
			$status = Extension::status( $error );
			if ( null === $status ) {
				/* translators: %s: error message */
				$out[] = array( 'error', sprintf( __( 'WooSync: the outbox cannot be read: %s', 'woosync' ), (string) $error ) );
			} else {
				foreach ( (array) ( $status['notices'] ?? array() ) as $notice ) {
					if ( is_string( $notice ) && '' !== $notice ) {
						/* translators: %s: a notice of the woosync extension about the outbox */
						$out[] = array( 'warning', sprintf( __( 'WooSync: %s', 'woosync' ), $notice ), 'outbox' );
					}
				}
				if ( 'unreadable' === Secret_Store::state()['state'] ) {
					$out[] = array( 'error', Secret_Store::unreadable_message(), 'secret' );
				}
				if ( ! empty( $status['worker_error'] ) ) {
					/* translators: %s: error message of the delivery thread */
					$out[] = array( 'error', sprintf( __( 'WooSync: the delivery thread reports: %s', 'woosync' ), (string) $status['worker_error'] ) );
				}
				foreach ( (array) ( $status['endpoints'] ?? array() ) as $endpoint ) {
					if ( ! is_array( $endpoint ) ) {
						continue;
					}
					$name = (string) ( $endpoint['name'] ?? '' );
					if ( ! Site_Scope::owns_endpoint( $name ) ) {
						continue; // Another site's endpoint in an outbox the network shares.
					}
					if ( empty( $endpoint['enabled'] ) && '' !== (string) ( $endpoint['disabled_reason'] ?? '' ) ) {
						$out[] = array(
							'error',
							sprintf(
								/* translators: 1: endpoint name, 2: reason, 3: settings URL */
								__( 'WooSync: endpoint "%1$s" is disabled (%2$s); its events wait in the outbox. Check the URL with your CRM, then save the WooSync settings (%3$s) to re-enable it.', 'woosync' ),
								$name,
								(string) $endpoint['disabled_reason'],
								$settings_url
							),
						);
					} else {
						$message = self::delivery_message( $name, $endpoint );
						if ( null !== $message ) {
							$out[] = $message;
						}
					}
				}
			}
		}
		if ( $dropped > 0 && Extension::loaded() ) {
			$out[] = array(
				'warning',
				/* translators: %d: events dropped */
				sprintf( __( 'WooSync: %d events were dropped while the fallback table was full. Run "wp woosync reconcile --products --orders" to send the current state to your CRM.', 'woosync' ), $dropped ),
			);
		}
		return $out;
	}

	/**
	 * What to tell the owner about one endpoint's deliveries, or null when there is nothing to do.
	 *
	 * Failing (3+ failures in a row, or paused by the circuit breaker): events wait and are retried
	 * on their own; the CRM or the endpoint's URL needs fixing. Working but with dead events (they used up
	 * every retry earlier, or the CRM refused them): the endpoint is fine, the dead events need a
	 * retry. Dead events of a healthy endpoint are never called "failing".
	 *
	 * @param string $name     Endpoint name.
	 * @param array  $endpoint Endpoint row of woosync_status().
	 * @return array{0:string,1:string}|null
	 */
	private static function delivery_message( $name, array $endpoint ) {
		if ( 'refused' === (string) ( $endpoint['health'] ?? '' ) || '' !== (string) ( $endpoint['refused_reason'] ?? '' ) ) {
			return array(
				'error',
				sprintf(
					/* translators: 1: endpoint name, 2: reason naming the address and the setting that allows it */
					__( 'WooSync: deliveries to "%1$s" are paused: %2$s. Its events wait in the outbox until the destination is allowed.', 'woosync' ),
					$name,
					(string) ( $endpoint['refused_reason'] ?? '' )
				),
			);
		}
		$fails  = (int) ( $endpoint['consecutive_failures'] ?? 0 );
		$dead   = (int) ( $endpoint['dead'] ?? 0 );
		$health = (string) ( $endpoint['health'] ?? '' );
		$log    = class_exists( __NAMESPACE__ . '\Log_Page' ) ? Log_Page::url( array( 'status' => 'dead' ) ) : admin_url();
		if ( $fails >= 3 || 'paused' === $health ) {
			$text = sprintf(
				/* translators: 1: endpoint name, 2: failures in a row, 3: last error */
				__( 'WooSync: deliveries to "%1$s" are failing (%2$d failures in a row; last error: %3$s). Events wait in the outbox and are retried on their own: check that the CRM is up and that the endpoint URL is right.', 'woosync' ),
				$name,
				$fails,
				(string) ( $endpoint['last_error'] ?? '' )
			);
			if ( $dead > 0 ) {
				/* translators: %d: dead deliveries */
				$text .= ' ' . sprintf( _n( '%d delivery already gave up: retry it once the CRM works ("wp woosync retry --dead").', '%d deliveries already gave up: retry them once the CRM works ("wp woosync retry --dead").', $dead, 'woosync' ), $dead );
			}
			return array( 'warning', $text );
		}
		if ( $dead > 0 ) {
			return array(
				'warning',
				sprintf(
					/* translators: 1: dead deliveries, 2: endpoint name, 3: URL of the log's dead deliveries */
					_n(
						'WooSync: %1$d delivery to "%2$s" gave up (every retry failed, or the CRM refused it); the endpoint works now. Review it and retry it in the WooSync log (%3$s), or run "wp woosync retry --dead".',
						'WooSync: %1$d deliveries to "%2$s" gave up (every retry failed, or the CRM refused them); the endpoint works now. Review them and retry them in the WooSync log (%3$s), or run "wp woosync retry --dead".',
						$dead,
						'woosync'
					),
					$dead,
					$name,
					$log
				),
			);
		}
		return null;
	}

	/**
	 * Prints the notices for users who can manage WooSync.
	 */
	public function render() {
		if ( ! current_user_can( Settings::capability() ) ) {
			return;
		}
		try {
			foreach ( $this->messages() as $message ) {
				if ( 'outbox' === ( $message[2] ?? '' ) && ! current_user_can( 'manage_options' ) ) {
					continue; // About files and servers: for administrators.
				}
				printf(
					'<div class="notice notice-%1$s woosync-notice"><p>%2$s</p></div>',
					esc_attr( $message[0] ),
					esc_html( $message[1] )
				);
			}
		} catch ( \Throwable $e ) {
			printf( '<div class="notice notice-error woosync-notice"><p>%s</p></div>', esc_html( 'WooSync: ' . $e->getMessage() ) );
		}
	}
}
