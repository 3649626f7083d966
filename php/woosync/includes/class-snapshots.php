<?php
/**
 * Snapshots of WooCommerce objects: products and customers when the event happens, orders as
 * stored at the end of the request (Order_Hooks).
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Turns WooCommerce objects into plain arrays (scalars and arrays only, as woosync_dispatch()
 * requires), using only public WooCommerce getters.
 */
class Snapshots {

	/**
	 * Product or variation.
	 *
	 * @param \WC_Product $product Product.
	 * @return array
	 */
	public static function product( $product ) {
		return array(
			'id'             => (int) $product->get_id(),
			'parent_id'      => (int) $product->get_parent_id(),
			'sku'            => (string) $product->get_sku(),
			'name'           => (string) $product->get_name(),
			'type'           => (string) $product->get_type(),
			'stock_quantity' => self::number_or_null( $product->get_stock_quantity() ),
			'stock_status'   => (string) $product->get_stock_status(),
			'manage_stock'   => (bool) $product->managing_stock(),
			'price'          => (string) $product->get_price(),
			'regular_price'  => (string) $product->get_regular_price(),
			'sale_price'     => (string) $product->get_sale_price(),
			'date_modified'  => self::date( $product->get_date_modified() ),
		);
	}

	/**
	 * Order with its line items.
	 *
	 * @param \WC_Order $order Order.
	 * @return array
	 */
	public static function order( $order ) {
		$items = array();
		foreach ( $order->get_items( 'line_item' ) as $item_id => $item ) {
			$product = $item->get_product();
			$items[] = array(
				'id'           => (int) $item_id,
				'product_id'   => (int) $item->get_product_id(),
				'variation_id' => (int) $item->get_variation_id(),
				'sku'          => $product ? (string) $product->get_sku() : '',
				'name'         => (string) $item->get_name(),
				'quantity'     => self::number_or_null( $item->get_quantity() ),
				'total'        => (string) $item->get_total(),
			);
		}
		return array(
			'id'             => (int) $order->get_id(),
			'number'         => (string) $order->get_order_number(),
			'status'         => (string) $order->get_status(),
			'currency'       => (string) $order->get_currency(),
			'total'          => (string) $order->get_total(),
			'customer_id'    => (int) $order->get_customer_id(),
			'billing_email'  => (string) $order->get_billing_email(),
			'billing'        => array(
				'first_name' => (string) $order->get_billing_first_name(),
				'last_name'  => (string) $order->get_billing_last_name(),
			),
			'line_items'     => $items,
			'date_created'   => self::date( $order->get_date_created() ),
			'date_modified'  => self::date( $order->get_date_modified() ),
			'date_paid'      => self::date( $order->get_date_paid() ),
			'date_completed' => self::date( $order->get_date_completed() ),
		);
	}

	/**
	 * Customer.
	 *
	 * @param \WC_Customer $customer Customer.
	 * @return array
	 */
	public static function customer( $customer ) {
		return array(
			'id'            => (int) $customer->get_id(),
			'email'         => (string) $customer->get_email(),
			'first_name'    => (string) $customer->get_first_name(),
			'last_name'     => (string) $customer->get_last_name(),
			'display_name'  => (string) $customer->get_display_name(),
			'billing'       => array(
				'first_name' => (string) $customer->get_billing_first_name(),
				'last_name'  => (string) $customer->get_billing_last_name(),
				'company'    => (string) $customer->get_billing_company(),
				'email'      => (string) $customer->get_billing_email(),
				'phone'      => (string) $customer->get_billing_phone(),
				'city'       => (string) $customer->get_billing_city(),
				'postcode'   => (string) $customer->get_billing_postcode(),
				'country'    => (string) $customer->get_billing_country(),
			),
			'date_created'  => self::date( $customer->get_date_created() ),
			'date_modified' => self::date( $customer->get_date_modified() ),
		);
	}

	/**
	 * RFC 3339 UTC string of a WC_DateTime (or any DateTimeInterface), or null.
	 *
	 * @param mixed $date Date or null.
	 * @return string|null
	 */
	public static function date( $date ) {
		if ( $date instanceof \DateTimeInterface ) {
			return gmdate( 'Y-m-d\TH:i:s\Z', $date->getTimestamp() );
		}
		return null;
	}

	/**
	 * Int or float, or null for ''/null (WooCommerce returns null for "not managed").
	 *
	 * @param mixed $value Value.
	 * @return int|float|null
	 */
	private static function number_or_null( $value ) {
		if ( null === $value || '' === $value ) {
			return null;
		}
		return is_numeric( $value ) ? 0 + $value : null;
	}
}
