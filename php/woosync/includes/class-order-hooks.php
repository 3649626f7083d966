<?php
/**
 * Order hooks.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * `order.created`, `order.updated` (coalesced) and `order.status_changed` (with `from` and `to`),
 * all key `order:<id>`.
 *
 * WooCommerce realities handled here:
 * - `woocommerce_new_order` fires from the data store's create(), before the order's items are
 *   saved (WC_Abstract_Order::save() calls save_items() afterwards, and wc_create_order() saves an
 *   empty order first). So `order.created` is deferred: it is sent from the checkout hooks that
 *   fire once the order is complete, or at the end of the request (`shutdown`), whichever is first,
 *   with a snapshot taken then. Updates of that order in the same request are folded into it and
 *   status changes are sent right after it, in order.
 * - `woocommerce_update_order` fires several times per save: updates are coalesced by the outbox.
 * - Loop prevention is decided when the change happens, not when the deferred event is sent.
 */
class Order_Hooks {

	/**
	 * Orders created in this request whose `order.created` is not sent yet:
	 * id => list of status-change payloads to send after it.
	 *
	 * @var array<int, array>
	 */
	private $pending = array();

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
	 * Wires the hooks. Argument lists as WooCommerce fires them:
	 * - `do_action( 'woocommerce_new_order', $order->get_id(), $order )` and
	 *   `do_action( 'woocommerce_update_order', $order->get_id(), $order )` in
	 *   plugins/woocommerce/includes/data-stores/class-wc-order-data-store-cpt.php (create, update)
	 *   and plugins/woocommerce/src/Internal/DataStores/Orders/OrdersTableDataStore.php (HPOS).
	 * - `do_action( 'woocommerce_order_status_changed', $this->get_id(), $status_transition['from'], $status_transition['to'], $this )`
	 *   in plugins/woocommerce/includes/class-wc-order.php (status_transition).
	 * - `do_action( 'woocommerce_checkout_order_processed', $order_id, $posted_data, $order )` in
	 *   plugins/woocommerce/includes/class-wc-checkout.php (process_checkout) and
	 *   `do_action( 'woocommerce_store_api_checkout_order_processed', $order )` in
	 *   plugins/woocommerce/src/StoreApi/Routes/V1/Checkout.php: the order is complete there.
	 */
	public function register() {
		add_action( 'woocommerce_new_order', array( $this, 'on_new_order' ), 10, 2 );
		add_action( 'woocommerce_update_order', array( $this, 'on_update_order' ), 10, 2 );
		add_action( 'woocommerce_order_status_changed', array( $this, 'on_status_changed' ), 10, 4 );
		add_action( 'woocommerce_checkout_order_processed', array( $this, 'on_checkout_processed' ), 99, 3 );
		add_action( 'woocommerce_store_api_checkout_order_processed', array( $this, 'on_store_api_processed' ), 99, 1 );
		add_action( 'shutdown', array( $this, 'send_pending' ), 0 );
	}

	/**
	 * A new order was stored (maybe without its items yet).
	 *
	 * @param int            $order_id Order id.
	 * @param \WC_Order|null $order    Order object (WooCommerce 3.x+ passes it).
	 */
	public function on_new_order( $order_id, $order = null ) {
		unset( $order );
		try {
			if ( $this->dispatcher->suppressed() ) {
				return;
			}
			$this->pending[ (int) $order_id ] = array();
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
	}

	/**
	 * An order was updated.
	 *
	 * @param int            $order_id Order id.
	 * @param \WC_Order|null $order    Order object.
	 */
	public function on_update_order( $order_id, $order = null ) {
		$order_id = (int) $order_id;
		if ( isset( $this->pending[ $order_id ] ) ) {
			return; // Folded into the deferred order.created.
		}
		try {
			if ( $this->dispatcher->suppressed() ) {
				return;
			}
			$order = $this->load( $order_id, $order );
			if ( $order ) {
				$this->dispatcher->dispatch( 'order.updated', Snapshots::order( $order ), 'order:' . $order_id, true, $order, false );
			}
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
	}

	/**
	 * An order's status changed.
	 *
	 * @param int            $order_id Order id.
	 * @param string         $from     Previous status (without `wc-`).
	 * @param string         $to       New status (without `wc-`).
	 * @param \WC_Order|null $order    Order object.
	 */
	public function on_status_changed( $order_id, $from, $to, $order = null ) {
		$order_id = (int) $order_id;
		try {
			if ( $this->dispatcher->suppressed() ) {
				return;
			}
			$order = $this->load( $order_id, $order );
			if ( ! $order ) {
				return;
			}
			$payload         = Snapshots::order( $order );
			$payload['from'] = (string) $from;
			$payload['to']   = (string) $to;
			if ( isset( $this->pending[ $order_id ] ) ) {
				$this->pending[ $order_id ][] = array( $payload, $order );
				return;
			}
			$this->dispatcher->dispatch( 'order.status_changed', $payload, 'order:' . $order_id, false, $order, false );
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
	}

	/**
	 * Classic checkout finished creating the order.
	 *
	 * @param int            $order_id    Order id.
	 * @param array          $posted_data Checkout form data (unused).
	 * @param \WC_Order|null $order       Order object.
	 */
	public function on_checkout_processed( $order_id, $posted_data = array(), $order = null ) {
		unset( $posted_data );
		$this->send_created( (int) $order_id, $order );
	}

	/**
	 * Block (Store API) checkout finished creating the order.
	 *
	 * @param \WC_Order $order Order object.
	 */
	public function on_store_api_processed( $order ) {
		if ( is_object( $order ) ) {
			$this->send_created( (int) $order->get_id(), $order );
		}
	}

	/**
	 * End of the request: sends every order.created still waiting.
	 */
	public function send_pending() {
		foreach ( array_keys( $this->pending ) as $order_id ) {
			$this->send_created( (int) $order_id, null );
		}
	}

	/**
	 * Sends order.created (snapshot taken now, when the order is complete), then the status
	 * changes recorded meanwhile.
	 *
	 * @param int            $order_id Order id.
	 * @param \WC_Order|null $order    Order object, reloaded when null.
	 */
	private function send_created( $order_id, $order ) {
		if ( ! isset( $this->pending[ $order_id ] ) ) {
			return;
		}
		$after = $this->pending[ $order_id ];
		unset( $this->pending[ $order_id ] );
		try {
			// Reload: the in-memory object of the creating code may predate its items.
			$fresh = $this->load( $order_id, null );
			$order = $fresh ? $fresh : $order;
			if ( ! $order ) {
				return;
			}
			$this->dispatcher->dispatch( 'order.created', Snapshots::order( $order ), 'order:' . $order_id, false, $order, false );
			foreach ( $after as $change ) {
				$this->dispatcher->dispatch( 'order.status_changed', $change[0], 'order:' . $order_id, false, $change[1], false );
			}
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
	}

	/**
	 * The order object: the one passed by the hook, else wc_get_order().
	 *
	 * @param int   $order_id Order id.
	 * @param mixed $order    Object passed by the hook.
	 * @return \WC_Order|null
	 */
	private function load( $order_id, $order ) {
		if ( $order instanceof \WC_Order ) {
			return $order;
		}
		if ( ! function_exists( 'wc_get_order' ) ) {
			return null;
		}
		$loaded = wc_get_order( $order_id );
		return $loaded instanceof \WC_Order ? $loaded : null;
	}
}
