<?php
/**
 * Customer hooks.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * `customer.created` and `customer.updated` (coalesced), key `customer:<id>`.
 */
class Customer_Hooks {

	/**
	 * Dispatcher.
	 *
	 * @var Dispatcher
	 */
	private $dispatcher;

	/**
	 * Constructor.
	 *
	 * @param Dispatcher $dispatcher Dispatcher.
	 */
	public function __construct( Dispatcher $dispatcher ) {
		$this->dispatcher = $dispatcher;
	}

	/**
	 * Wires the hooks.
	 *
	 * - `do_action( 'woocommerce_created_customer', $customer_id, $new_customer_data, $password_generated )`
	 *   in plugins/woocommerce/includes/wc-user-functions.php (wc_create_new_customer).
	 * - `do_action( 'woocommerce_update_customer', $customer->get_id(), $customer )` in
	 *   plugins/woocommerce/includes/data-stores/class-wc-customer-data-store.php (update); older
	 *   versions and some extensions pass only the id, so the object is optional.
	 */
	public function register() {
		add_action( 'woocommerce_created_customer', array( $this, 'on_created' ), 10, 3 );
		add_action( 'woocommerce_update_customer', array( $this, 'on_updated' ), 10, 2 );
	}

	/**
	 * A customer account was created.
	 *
	 * @param int   $customer_id        User id.
	 * @param array $new_customer_data  Data passed to wp_insert_user (unused: may hold the password).
	 * @param bool  $password_generated Whether the password was generated (unused).
	 */
	public function on_created( $customer_id, $new_customer_data = array(), $password_generated = false ) {
		unset( $new_customer_data, $password_generated );
		$this->send( 'customer.created', (int) $customer_id, null, false );
	}

	/**
	 * A customer was saved.
	 *
	 * @param int               $customer_id Customer id.
	 * @param \WC_Customer|null $customer    Customer object (WooCommerce 3.x+ passes it).
	 */
	public function on_updated( $customer_id, $customer = null ) {
		$this->send( 'customer.updated', (int) $customer_id, $customer, true );
	}

	/**
	 * Snapshot and dispatch.
	 *
	 * @param string            $topic       Topic.
	 * @param int               $customer_id Customer id.
	 * @param \WC_Customer|null $customer    Customer, loaded when null.
	 * @param bool              $coalesce    Coalesce flag.
	 */
	private function send( $topic, $customer_id, $customer, $coalesce ) {
		try {
			if ( $customer_id <= 0 || $this->dispatcher->suppressed() ) {
				return;
			}
			if ( ! ( $customer instanceof \WC_Customer ) ) {
				$customer = new \WC_Customer( $customer_id );
			}
			$this->dispatcher->dispatch( $topic, Snapshots::customer( $customer ), Site_Scope::key( 'customer', $customer_id ), $coalesce, $customer, false );
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
	}
}
