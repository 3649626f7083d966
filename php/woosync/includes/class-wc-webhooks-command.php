<?php
/**
 * `wp woosync wc-webhooks`: WooCommerce's own webhooks delivered by woosync.
 *
 * @package Woosync
 */

namespace Woosync;

use WP_CLI;
use WP_CLI\Utils;

defined( 'ABSPATH' ) || exit;

/**
 * Switches the delivery of WooCommerce's webhooks (Settings → Advanced → Webhooks) between
 * woosync and WooCommerce's Action Scheduler, and shows who delivers each one.
 *
 * ## EXAMPLES
 *
 *     $ wp woosync wc-webhooks enable
 *     $ wp woosync wc-webhooks status
 *     $ wp woosync wc-webhooks disable
 */
class Wc_Webhooks_Command {

	const FIELDS = array( 'id', 'name', 'topic', 'status', 'delivered_by', 'endpoint', 'health', 'pending', 'dead', 'refused' );

	/**
	 * The feature.
	 *
	 * @var Wc_Webhooks
	 */
	private $feature;

	/**
	 * Constructor.
	 *
	 * @param Wc_Webhooks $feature The feature.
	 */
	public function __construct( Wc_Webhooks $feature ) {
		$this->feature = $feature;
	}

	/**
	 * Whether woosync delivers WooCommerce's webhooks, and for each webhook who delivers it, its
	 * endpoint, health and waiting deliveries.
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
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function status( $args, $assoc_args ) {
		$format = (string) Utils\get_flag_value( $assoc_args, 'format', 'table' );
		$rows   = $this->feature->report();
		if ( 'json' === $format || 'yaml' === $format ) {
			$data = array(
				'enabled'  => Wc_Webhooks::enabled(),
				'webhooks' => $rows,
			);
			WP_CLI::line( 'json' === $format ? (string) wp_json_encode( $data ) : \Spyc::YAMLDump( $data, 2, 0 ) );
			return;
		}
		if ( 'table' === $format ) {
			WP_CLI::line( sprintf( 'WooCommerce webhooks delivered by woosync: %s', Wc_Webhooks::enabled() ? 'on' : 'off' ) );
			if ( ! $rows ) {
				WP_CLI::line( 'No WooCommerce webhooks.' );
				return;
			}
		}
		Utils\format_items( $format, $rows, self::FIELDS );
	}

	/**
	 * Delivers WooCommerce's webhooks through woosync: mirrors every webhook to an endpoint and
	 * takes over the deliveries WooCommerce already scheduled.
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function enable( $args, $assoc_args ) {
		if ( ! Extension::loaded() ) {
			WP_CLI::error( 'The woosync PHP extension is not loaded: WooCommerce keeps delivering its webhooks.' );
		}
		if ( ! Wc_Webhooks::woocommerce_ready() ) {
			WP_CLI::error( 'WooCommerce is not active.' );
		}
		if ( Wc_Webhooks::enabled() ) {
			$done = $this->feature->switched_on(); // Again: re-checks endpoints and stragglers.
		} else {
			$this->feature->set_enabled( true ); // The option's hook switches on.
			$done = $this->feature->last_switch ?? array(
				'mirrored'   => 0,
				'taken_over' => 0,
			);
		}
		WP_CLI::success(
			sprintf(
				'WooCommerce webhooks are delivered by woosync (%d mirrored%s).',
				$done['mirrored'],
				sprintf( ', %d scheduled deliveries taken over', $done['taken_over'] )
			)
		);
	}

	/**
	 * Gives WooCommerce's webhooks back to WooCommerce (Action Scheduler). Deliveries already in
	 * woosync are still delivered by it.
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function disable( $args, $assoc_args ) {
		$this->feature->set_enabled( false );
		WP_CLI::success( 'WooCommerce webhooks are delivered by WooCommerce again; deliveries already in woosync are still delivered by it.' );
	}
}
