<?php
/**
 * The checkout benchmark's shop, set up through WooCommerce's own API (run once with the real
 * WP-CLI: `wp eval-file setup.php`; BENCH_PRODUCTS in the environment = catalogue size).
 *
 * - WC_Install::newly_installed() is what the first wp-admin view after activation runs: on
 *   WooCommerce >= 8.2 it turns HPOS on for a new shop (checked below: the bench needs HPOS).
 * - A launched shop in EUR, guest checkout and account creation at checkout allowed, cash on
 *   delivery, free shipping everywhere, no taxes, pretty permalinks (/wp-json/ for the Store API).
 * - BENCH_PRODUCTS simple products with managed stock (1,000,000 each: never out of stock).
 * Prints one JSON line: versions, HPOS state, product ids.
 */

if ( method_exists( 'WC_Install', 'newly_installed' ) ) {
	WC_Install::newly_installed();
}
update_option( 'woocommerce_custom_orders_table_enabled', 'yes' );
update_option( 'woocommerce_custom_orders_table_data_sync_enabled', 'no' );
update_option( 'woocommerce_coming_soon', 'no' );
update_option( 'woocommerce_store_pages_only', 'no' );
update_option( 'woocommerce_currency', 'EUR' );
update_option( 'woocommerce_default_country', 'DE:DE-BE' );
update_option( 'woocommerce_allowed_countries', 'all' );
update_option( 'woocommerce_ship_to_countries', '' );
update_option( 'woocommerce_calc_taxes', 'no' );
update_option( 'woocommerce_enable_guest_checkout', 'yes' );
update_option( 'woocommerce_enable_signup_and_login_from_checkout', 'yes' );
update_option( 'woocommerce_registration_generate_password', 'no' );
update_option( 'woocommerce_enable_checkout_login_reminder', 'no' );
update_option( 'woocommerce_manage_stock', 'yes' );
update_option( 'woocommerce_allow_tracking', 'no' );
update_option( 'woocommerce_show_marketplace_suggestions', 'no' );
update_option( 'permalink_structure', '/%postname%/' );
flush_rewrite_rules( false );

$cod            = get_option( 'woocommerce_cod_settings', array() );
$cod            = is_array( $cod ) ? $cod : array();
$cod['enabled'] = 'yes';
update_option( 'woocommerce_cod_settings', $cod );

$zone = new WC_Shipping_Zone( 0 ); // "Locations not covered by your other zones".
if ( ! $zone->get_shipping_methods() ) {
	$zone->add_shipping_method( 'free_shipping' );
	$zone->save();
}

$n   = max( 1, (int) getenv( 'BENCH_PRODUCTS' ) );
$ids = array();
for ( $i = 1; $i <= $n; $i++ ) {
	$p = new WC_Product_Simple();
	$p->set_name( sprintf( 'Bench product %03d', $i ) );
	$p->set_sku( sprintf( 'BENCH-%03d', $i ) );
	$p->set_regular_price( (string) ( 5 + $i % 40 ) . '.90' );
	$p->set_manage_stock( true );
	$p->set_stock_quantity( 1000000 );
	$p->set_status( 'publish' );
	$ids[] = $p->save();
}

echo wp_json_encode(
	array(
		'woocommerce' => WC()->version,
		'wordpress'   => get_bloginfo( 'version' ),
		'hpos'        => \Automattic\WooCommerce\Utilities\OrderUtil::custom_orders_table_usage_is_enabled(),
		'products'    => $ids,
	)
), "\n";
