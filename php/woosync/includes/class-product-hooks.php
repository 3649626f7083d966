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
			$key = Site_Scope::key( 'product', $product->get_id() );
			Resource_Lock::run(
				$key,
				function () use ( $product, $key ) {
					$stored = self::with_stored_stock( $product );
					$this->dispatcher->dispatch( self::TOPIC, Snapshots::product( $stored ), $key, true, $stored, false );
				}
			);
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
	}

	/**
	 * The product with the stock the database holds now (read under the resource lock).
	 *
	 * The object WooCommerce hands over carries the figure wc_update_product_stock() computed from
	 * a read taken before its UPDATE: two concurrent checkouts of one SKU both report the same
	 * figure, and the CRM would end one unit off. A copy with the stored figure (and the stock
	 * status WooCommerce derives from it) is sent instead; the caller's object is left alone.
	 *
	 * @param \WC_Product $product Product or variation.
	 * @return \WC_Product
	 */
	public static function with_stored_stock( $product ) {
		global $wpdb;
		if ( ! $product->managing_stock() || (int) $product->get_stock_managed_by_id() !== (int) $product->get_id() ) {
			return $product;
		}
		$stored = $wpdb->get_var( $wpdb->prepare( "SELECT meta_value FROM {$wpdb->postmeta} WHERE post_id = %d AND meta_key = '_stock'", $product->get_id() ) );
		if ( null === $stored || ! is_numeric( $stored ) ) {
			return $product;
		}
		$stored = wc_stock_amount( $stored );
		if ( $stored === wc_stock_amount( $product->get_stock_quantity() ) ) {
			return $product;
		}
		$copy = clone $product;
		$copy->set_stock_quantity( $stored );
		$copy->validate_props();
		return $copy;
	}
}
