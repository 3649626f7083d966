<?php
/**
 * Checkout benchmark, variant "synchronous": a typical CRM integration. On the same WooCommerce hooks
 * the woosync plugin listens to, it POSTs a JSON snapshot to the CRM with wp_remote_post() and a 5 s
 * timeout, inside the request that made the change, and moves on whatever happens (no queue, no retry).
 *
 * Every attempt is appended to BENCH_SYNC_LOG (one JSON line: time, topic, key, HTTP code or error,
 * duration), so the bench can count what was attempted against what the CRM received.
 */

defined( 'ABSPATH' ) || exit;

/**
 * POSTs one change to the CRM.
 *
 * @param string $topic Topic.
 * @param string $key   Resource, e.g. order:42.
 * @param array  $data  Snapshot.
 */
function bench_sync_crm_post( $topic, $key, array $data ) {
	$start    = microtime( true );
	$response = wp_remote_post(
		BENCH_CRM_URL . '/sync',
		array(
			'timeout' => 5,
			'headers' => array(
				'Content-Type'  => 'application/json',
				'X-Bench-Topic' => $topic,
				'X-Bench-Key'   => $key,
			),
			'body'    => wp_json_encode(
				array(
					'topic'   => $topic,
					'key'     => $key,
					'sent_at' => $start,
					'data'    => $data,
				)
			),
		)
	);
	$line = array(
		't'     => $start,
		'topic' => $topic,
		'key'   => $key,
		'ms'    => round( ( microtime( true ) - $start ) * 1000, 1 ),
		'code'  => is_wp_error( $response ) ? 0 : (int) wp_remote_retrieve_response_code( $response ),
		'error' => is_wp_error( $response ) ? $response->get_error_message() : '',
	);
	file_put_contents( BENCH_SYNC_LOG, wp_json_encode( $line ) . "\n", FILE_APPEND | LOCK_EX ); // phpcs:ignore
}

/**
 * Order snapshot as stored.
 *
 * @param int $order_id Order id.
 * @return array|null
 */
function bench_sync_crm_order( $order_id ) {
	$order = wc_get_order( $order_id );
	if ( ! $order ) {
		return null;
	}
	$items = array();
	foreach ( $order->get_items() as $item ) {
		$items[] = array(
			'product_id' => $item->get_product_id(),
			'quantity'   => $item->get_quantity(),
			'total'      => $item->get_total(),
		);
	}
	return array(
		'id'            => $order->get_id(),
		'status'        => $order->get_status(),
		'total'         => $order->get_total(),
		'customer_id'   => $order->get_customer_id(),
		'billing_email' => $order->get_billing_email(),
		'line_items'    => $items,
		'date_modified' => $order->get_date_modified() ? $order->get_date_modified()->format( DATE_ATOM ) : null,
	);
}

add_action(
	'woocommerce_new_order',
	static function ( $order_id ) {
		$data = bench_sync_crm_order( $order_id );
		if ( $data ) {
			bench_sync_crm_post( 'order.created', 'order:' . $order_id, $data );
		}
	}
);
add_action(
	'woocommerce_update_order',
	static function ( $order_id ) {
		$data = bench_sync_crm_order( $order_id );
		if ( $data ) {
			bench_sync_crm_post( 'order.updated', 'order:' . $order_id, $data );
		}
	}
);
add_action(
	'woocommerce_order_status_changed',
	static function ( $order_id, $from, $to ) {
		$data = bench_sync_crm_order( $order_id );
		if ( $data ) {
			$data['from'] = $from;
			$data['to']   = $to;
			bench_sync_crm_post( 'order.status_changed', 'order:' . $order_id, $data );
		}
	},
	10,
	3
);
$bench_sync_stock = static function ( $product ) {
	bench_sync_crm_post(
		'product.stock_updated',
		'product:' . $product->get_id(),
		array(
			'id'             => $product->get_id(),
			'sku'            => $product->get_sku(),
			'stock_quantity' => $product->get_stock_quantity(),
		)
	);
};
add_action( 'woocommerce_product_set_stock', $bench_sync_stock );
add_action( 'woocommerce_variation_set_stock', $bench_sync_stock );
$bench_sync_customer = static function ( $customer_id ) {
	$customer = new WC_Customer( $customer_id );
	bench_sync_crm_post(
		current_action() === 'woocommerce_created_customer' ? 'customer.created' : 'customer.updated',
		'customer:' . $customer_id,
		array(
			'id'    => $customer->get_id(),
			'email' => $customer->get_email(),
		)
	);
};
add_action( 'woocommerce_created_customer', $bench_sync_customer );
add_action( 'woocommerce_update_customer', $bench_sync_customer );
