<?php
/**
 * Small helpers for the PHP test scripts (loaded by bootstrap.php after WordPress).
 */

/** A simple product with managed stock, created without dispatching (woosync_suppress). */
function t_product( $sku, $stock, $price = '9.99' ) {
	return woosync_suppress(
		function () use ( $sku, $stock, $price ) {
			$p = new WC_Product_Simple();
			$p->set_name( 'Product ' . $sku );
			$p->set_sku( $sku );
			$p->set_regular_price( $price );
			$p->set_manage_stock( true );
			$p->set_stock_quantity( $stock );
			$p->save();
			return $p;
		}
	);
}

/** A variable product with one variation per entry of $variations (sku => stock), without dispatching. */
function t_variable( $sku, array $variations ) {
	return woosync_suppress(
		function () use ( $sku, $variations ) {
			$parent = new WC_Product_Variable();
			$parent->set_name( 'Variable ' . $sku );
			$parent->set_sku( $sku );
			$parent->save();
			$ids = array();
			foreach ( $variations as $vsku => $stock ) {
				$v = new WC_Product_Variation();
				$v->set_name( 'Variation ' . $vsku );
				$v->set_parent_id( $parent->get_id() );
				$v->set_sku( $vsku );
				$v->set_regular_price( '12.50' );
				$v->set_manage_stock( true );
				$v->set_stock_quantity( $stock );
				$v->save();
				$ids[ $vsku ] = $v->get_id();
			}
			return array( $parent->get_id(), $ids );
		}
	);
}

/** Waits for deliveries at the very end of the request (after the plugin's shutdown work). */
function t_flush_at_shutdown( $seconds = 15.0 ) {
	add_action(
		'shutdown',
		function () use ( $seconds ) {
			if ( function_exists( 'woosync_flush' ) ) {
				woosync_flush( $seconds );
			}
		},
		PHP_INT_MAX
	);
}
