<?php
/**
 * Makes the freshly activated WooCommerce a launched shop, through WooCommerce's own API.
 * Run once per test site with the real WP-CLI: `wp eval-file tests/wp/shop-setup.php`.
 *
 * - WC_Install::newly_installed() is what the first wp-admin page view after activation runs
 *   (admin_init): on WooCommerce ≥ 8.2 it turns on HPOS for a new shop and sets the coming-soon
 *   mode, like a real new shop gets. (WP-CLI never fires admin_init.)
 * - A launched store in EUR selling everywhere, cash on delivery on, free shipping everywhere,
 *   no taxes: the Store API and WC_Checkout can take an order from a guest.
 */

if ( method_exists( 'WC_Install', 'newly_installed' ) ) {
	WC_Install::newly_installed();
}
update_option( 'woocommerce_coming_soon', 'no' );
update_option( 'woocommerce_store_pages_only', 'no' );
update_option( 'woocommerce_currency', 'EUR' );
update_option( 'woocommerce_default_country', 'DE:DE-BE' );
update_option( 'woocommerce_allowed_countries', 'all' );
update_option( 'woocommerce_ship_to_countries', '' );
update_option( 'woocommerce_calc_taxes', 'no' );
update_option( 'woocommerce_enable_guest_checkout', 'yes' );
update_option( 'woocommerce_enable_checkout_login_reminder', 'no' );

$cod            = get_option( 'woocommerce_cod_settings', array() );
$cod            = is_array( $cod ) ? $cod : array();
$cod['enabled'] = 'yes';
update_option( 'woocommerce_cod_settings', $cod );

$zone = new WC_Shipping_Zone( 0 ); // "Locations not covered by your other zones".
if ( ! $zone->get_shipping_methods() ) {
	$zone->add_shipping_method( 'free_shipping' );
	$zone->save();
}

// Classic checkout page (shortcode), next to the block checkout page WooCommerce created.
$classic = get_page_by_path( 'classic-checkout' );
if ( ! $classic ) {
	wp_insert_post(
		array(
			'post_type'    => 'page',
			'post_status'  => 'publish',
			'post_name'    => 'classic-checkout',
			'post_title'   => 'Classic checkout',
			'post_content' => '<!-- wp:shortcode -->[woocommerce_checkout]<!-- /wp:shortcode -->',
		)
	);
}

echo wp_json_encode(
	array(
		'woocommerce' => WC()->version,
		'wordpress'   => get_bloginfo( 'version' ),
		'hpos'        => get_option( 'woocommerce_custom_orders_table_enabled' ),
	)
), "\n";
