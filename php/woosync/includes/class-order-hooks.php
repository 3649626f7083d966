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
 * all key `order:<id>`, carrying the order **as stored** once the request's changes are done.
 *
 * What WooCommerce really does (read in WooCommerce 11's source):
 * - `woocommerce_update_order` fires on every save, often several times per request, and hands
 *   over whatever object was saved. A block (Store API) checkout saves its draft order at each
 *   step of its checkout step logger (wc_log_order_step(), includes/wc-order-step-logger-functions.php),
 *   and after payment the logger saves the Store API's own object, which still says `pending`
 *   while the gateway moved a fresh copy of the order to `processing`
 *   (src/StoreApi/Routes/V1/Checkout.php, process_order()). A snapshot of the object a hook passes
 *   can therefore be stale.
 * - `woocommerce_new_order` fires when an order leaves a draft status (`checkout-draft`, `draft`,
 *   `auto-draft`) or is created without one, in the data stores' create() and update()
 *   (includes/data-stores/class-wc-order-data-store-cpt.php, src/Internal/DataStores/Orders/
 *   OrdersTableDataStore.php), before the line items of a new order object are saved.
 * - `woocommerce_order_status_changed` fires from WC_Order::status_transition() after the save.
 *
 * So the hooks only note what happened (an id and the status transitions: no snapshot); at the end
 * of the request (`shutdown`) each noted order is read back from the database once, one snapshot is
 * built, and its events are dispatched in this order: `order.created` (the order is new in this
 * request: updates are folded into it), each `order.status_changed` in the order they happened,
 * then one `order.updated` (coalesced) when it was saved and not created here. An order that is
 * still a draft, or no longer exists, sends nothing; a transition out of a draft status is the
 * creation, not a status change. Loop prevention is decided when the change happens.
 *
 * A process killed before `shutdown` (SIGKILL, a fatal error in another plugin's shutdown code)
 * loses the request's order events; `wp woosync reconcile --orders` re-sends the stored state.
 * A long process (an import, a queue runner) sends the oldest noted order early once more than
 * MAX_WAITING are waiting, and changes noted after the end-of-request send go out at once.
 */
class Order_Hooks {

	/**
	 * Statuses of orders that are not orders yet: the ones for which WooCommerce's data stores do
	 * not fire `woocommerce_new_order`.
	 */
	const DRAFT_STATUSES = array( 'checkout-draft', 'draft', 'auto-draft' );

	/**
	 * Orders noted before the oldest is sent early.
	 */
	const MAX_WAITING = 100;

	/**
	 * Orders changed in this request, in the order first noted: "<blog id>:<order id>" =>
	 * array{blog:int, id:int, created:bool, updated:bool, changes:array<int,array{0:string,1:string}>}.
	 *
	 * @var array<string, array>
	 */
	private $waiting = array();

	/**
	 * Whether the end-of-request send ran (later changes are sent at once).
	 *
	 * @var bool
	 */
	private $closed = false;

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
	 * - `do_action( 'woocommerce_new_order', $order_id, $order )` and
	 *   `do_action( 'woocommerce_update_order', $order_id, $order )` in the order data stores
	 *   (create, update);
	 * - `do_action( 'woocommerce_order_status_changed', $id, $from, $to, $order )` in
	 *   includes/class-wc-order.php (status_transition).
	 * `shutdown` runs late (priority 100) so that WooCommerce's own shutdown work is included.
	 */
	public function register() {
		add_action( 'woocommerce_new_order', array( $this, 'on_new_order' ), 10, 1 );
		add_action( 'woocommerce_update_order', array( $this, 'on_update_order' ), 10, 1 );
		add_action( 'woocommerce_order_status_changed', array( $this, 'on_status_changed' ), 10, 3 );
		add_action( 'shutdown', array( $this, 'send_waiting' ), 100 );
	}

	/**
	 * An order was created (or left a draft status).
	 *
	 * @param int $order_id Order id.
	 */
	public function on_new_order( $order_id ) {
		$this->note( $order_id, 'created' );
	}

	/**
	 * An order was saved.
	 *
	 * @param int $order_id Order id.
	 */
	public function on_update_order( $order_id ) {
		$this->note( $order_id, 'updated' );
	}

	/**
	 * An order's status changed (after the save).
	 *
	 * @param int    $order_id Order id.
	 * @param string $from     Previous status (without `wc-`).
	 * @param string $to       New status (without `wc-`).
	 */
	public function on_status_changed( $order_id, $from, $to ) {
		if ( in_array( (string) $from, self::DRAFT_STATUSES, true ) ) {
			return; // Leaving a draft status creates the order (woocommerce_new_order fires too).
		}
		$this->note( $order_id, 'status', array( (string) $from, (string) $to ) );
	}

	/**
	 * Notes a change, unless it is made on behalf of the CRM. Nothing is read or built here.
	 *
	 * @param int        $order_id Order id.
	 * @param string     $what     created|updated|status.
	 * @param array|null $change   Status transition (from, to).
	 */
	private function note( $order_id, $what, $change = null ) {
		try {
			$order_id = (int) $order_id;
			if ( $order_id <= 0 || $this->dispatcher->suppressed() ) {
				return;
			}
			$blog = get_current_blog_id();
			$slot = $blog . ':' . $order_id;
			if ( ! isset( $this->waiting[ $slot ] ) ) {
				$this->waiting[ $slot ] = array(
					'blog'    => $blog,
					'id'      => $order_id,
					'created' => false,
					'updated' => false,
					'changes' => array(),
				);
			}
			if ( 'status' === $what ) {
				$this->waiting[ $slot ]['changes'][] = $change;
			} else {
				$this->waiting[ $slot ][ $what ] = true;
			}
			if ( $this->closed ) {
				$this->send( $slot ); // After the end-of-request send: nothing else will come.
			} elseif ( count( $this->waiting ) > self::MAX_WAITING ) {
				$this->send( (string) array_key_first( $this->waiting ) );
			}
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
	}

	/**
	 * End of the request: sends every noted order, in the order first noted.
	 */
	public function send_waiting() {
		$this->closed = true;
		foreach ( array_keys( $this->waiting ) as $slot ) {
			$this->send( (string) $slot );
		}
	}

	/**
	 * Reads one noted order back, builds its snapshot once and dispatches its events.
	 *
	 * @param string $slot Key in $this->waiting.
	 */
	private function send( $slot ) {
		if ( ! isset( $this->waiting[ $slot ] ) ) {
			return;
		}
		$noted = $this->waiting[ $slot ];
		unset( $this->waiting[ $slot ] );
		$switched = false;
		try {
			if ( is_multisite() && (int) $noted['blog'] !== get_current_blog_id() ) {
				$switched = switch_to_blog( (int) $noted['blog'] ); // Its outbox and its order tables.
			}
			$key = Site_Scope::key( 'order', $noted['id'] );
			// Read and dispatch under the order's lock: a concurrent request that changes the
			// order (a payment notification, an admin) dispatches before or after this, whole.
			Resource_Lock::run(
				$key,
				function () use ( $noted, $key ) {
					Resource_Lock::forget_cached( 'order', (int) $noted['id'] );
					$this->dispatch_noted( $noted, $key );
				}
			);
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		} finally {
			if ( $switched ) {
				restore_current_blog();
			}
		}
	}

	/**
	 * Reads a noted order back and dispatches its events (under its lock).
	 *
	 * @param array  $noted What was noted about the order.
	 * @param string $key   Its ordering key.
	 */
	private function dispatch_noted( array $noted, $key ) {
		$order = self::stored( (int) $noted['id'] );
		if ( null === $order || in_array( $order->get_status(), self::DRAFT_STATUSES, true ) ) {
			return;
		}
		$snapshot = Snapshots::order( $order );
		if ( $noted['created'] ) {
			$this->dispatcher->dispatch( 'order.created', $snapshot, $key, false, $order, false );
		}
		foreach ( $noted['changes'] as $change ) {
			$payload         = $snapshot;
			$payload['from'] = $change[0];
			$payload['to']   = $change[1];
			$this->dispatcher->dispatch( 'order.status_changed', $payload, $key, false, $order, false );
		}
		if ( $noted['updated'] && ! $noted['created'] ) {
			$this->dispatcher->dispatch( 'order.updated', $snapshot, $key, true, $order, false );
		}
	}

	/**
	 * The order as stored now (never an object a hook handed over, which may be stale).
	 *
	 * @param int $order_id Order id.
	 * @return \WC_Order|null Null for refunds, other order types and deleted orders.
	 */
	public static function stored( $order_id ) {
		if ( ! function_exists( 'wc_get_order' ) ) {
			return null;
		}
		$order = wc_get_order( $order_id );
		return $order instanceof \WC_Order ? $order : null;
	}
}
