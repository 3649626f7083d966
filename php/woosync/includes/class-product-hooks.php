<?php
/**
 * Product stock hooks.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * `product.stock_updated` for products and variations (a variation is its own SKU and carries
 * its `parent_id`). Key `product:<id>`, coalesced: the latest stock wins.
 */
class Product_Hooks {

	const TOPIC = 'product.stock_updated';

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
	 * Both fire with the product object as the only argument:
	 * `do_action( 'woocommerce_product_set_stock', $product )` and
	 * `do_action( 'woocommerce_variation_set_stock', $product )` in
	 * plugins/woocommerce/includes/data-stores/class-wc-product-data-store-cpt.php
	 * (handle_updated_props) and plugins/woocommerce/includes/wc-stock-functions.php
	 * (wc_update_product_stock).
	 */
	public function register() {
		add_action( 'woocommerce_product_set_stock', array( $this, 'on_set_stock' ), 10, 1 );
		add_action( 'woocommerce_variation_set_stock', array( $this, 'on_set_stock' ), 10, 1 );
	}

	/**
	 * Stock of a product or variation changed.
	 *
	 * @param \WC_Product $product Product or variation.
	 */
	public function on_set_stock( $product ) {
		try {
			if ( ! is_object( $product ) || $this->dispatcher->suppressed() ) {
				return;
			}
			$this->dispatcher->dispatch( self::TOPIC, Snapshots::product( $product ), Site_Scope::key( 'product', $product->get_id() ), true, $product, false );
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
	}
}
