<?php
/**
 * A small stand-in for the parts of WooCommerce that the woosync plugin uses — NOT WooCommerce.
 *
 * WooCommerce cannot be installed in the test environment, so these classes and functions mirror
 * the real names, signatures and hook arguments (each method names the WooCommerce file it
 * mirrors). Data lives in real WordPress posts, post meta and users. There is no __call: an
 * unknown method is a PHP Error, so the plugin cannot silently depend on something missing here.
 *
 * Loaded as a must-use plugin by the test site (tests/wp/mu-woocommerce-standin.php).
 */

namespace Automattic\WooCommerce\Utilities {

	/**
	 * Mirrors plugins/woocommerce/src/Utilities/FeaturesUtil.php.
	 */
	class FeaturesUtil {
		/** @var array Declarations received, for the tests. */
		public static $declared = array();

		/** Mirrors FeaturesUtil::declare_compatibility() (src/Utilities/FeaturesUtil.php). */
		public static function declare_compatibility( $feature_id, $plugin_file, $positive_compatibility = true ) {
			self::$declared[] = array( $feature_id, $plugin_file, $positive_compatibility );
			return true;
		}
	}
}

namespace {

	/** Mirrors plugins/woocommerce/includes/class-woocommerce.php (only what is used). */
	final class WooCommerce {
		/** @var string */
		public $version = '9.4.0-standin';
		/** @var WooCommerce|null */
		private static $instance = null;

		/** Mirrors WooCommerce::instance() (includes/class-woocommerce.php). */
		public static function instance() {
			if ( null === self::$instance ) {
				self::$instance = new self();
			}
			return self::$instance;
		}

		/** Mirrors WooCommerce::init(): hooked to init priority 0, fires before_woocommerce_init (includes/class-woocommerce.php). */
		public function init() {
			do_action( 'before_woocommerce_init' );
			do_action( 'woocommerce_init' );
		}
	}

	/** Mirrors WC() in plugins/woocommerce/woocommerce.php. */
	function WC() { // phpcs:ignore WordPress.NamingConventions.ValidFunctionName
		return WooCommerce::instance();
	}

	add_action( 'init', array( WooCommerce::instance(), 'init' ), 0 );

	/** Mirrors plugins/woocommerce/includes/class-wc-datetime.php. */
	class WC_DateTime extends DateTime {
		/** Mirrors WC_DateTime::__toString(). */
		#[\ReturnTypeWillChange]
		public function __toString() {
			return $this->format( DATE_ATOM );
		}
		/** Mirrors WC_DateTime::getOffsetTimestamp(). */
		public function getOffsetTimestamp() {
			return $this->getTimestamp() + $this->getOffset();
		}
		/** Mirrors WC_DateTime::date(). */
		public function date( $format ) {
			return gmdate( $format, $this->getOffsetTimestamp() );
		}
		/** Helper: a WC_DateTime from a unix time (WooCommerce builds them in wc_string_to_datetime()). */
		public static function at( $ts ) {
			$d = new self( '@' . (int) $ts );
			$d->setTimezone( new DateTimeZone( 'UTC' ) );
			return $d;
		}
	}

	/** Mirrors wc_stock_amount() in plugins/woocommerce/includes/wc-stock-functions.php. */
	function wc_stock_amount( $amount ) {
		return (int) $amount;
	}

	/** Mirrors plugins/woocommerce/includes/abstracts/abstract-wc-data.php (props, changes, object_read). */
	abstract class WC_Data {
		/** @var int */
		protected $id = 0;
		/** @var array */
		protected $data = array();
		/** @var array */
		protected $changes = array();
		/** @var bool */
		protected $object_read = false;

		/** Mirrors WC_Data::get_id(). */
		public function get_id() {
			return $this->id;
		}
		/** Mirrors WC_Data::set_id(). */
		public function set_id( $id ) {
			$this->id = absint( $id );
		}
		/** Mirrors WC_Data::set_object_read(). */
		public function set_object_read( $read = true ) {
			$this->object_read = (bool) $read;
		}
		/** Mirrors WC_Data::get_changes(). */
		public function get_changes() {
			return $this->changes;
		}
		/** Mirrors WC_Data::apply_changes(). */
		public function apply_changes() {
			$this->data    = array_replace( $this->data, $this->changes );
			$this->changes = array();
		}
		/** Mirrors WC_Data::set_props(). */
		public function set_props( $props ) {
			foreach ( $props as $prop => $value ) {
				$setter = "set_$prop";
				$this->{$setter}( $value );
			}
			return true;
		}
		/** Mirrors WC_Data::get_prop(). */
		protected function get_prop( $prop, $context = 'view' ) {
			unset( $context );
			if ( array_key_exists( $prop, $this->changes ) ) {
				return $this->changes[ $prop ];
			}
			return $this->data[ $prop ] ?? null;
		}
		/** Mirrors WC_Data::set_prop(). */
		protected function set_prop( $prop, $value ) {
			if ( true === $this->object_read ) {
				if ( ( $this->data[ $prop ] ?? null ) !== $value || array_key_exists( $prop, $this->changes ) ) {
					$this->changes[ $prop ] = $value;
				}
			} else {
				$this->data[ $prop ] = $value;
			}
		}
		/** Mirrors WC_Data::set_date_prop() (stores a WC_DateTime). */
		protected function set_date_prop( $prop, $value ) {
			if ( null === $value || '' === $value ) {
				$this->set_prop( $prop, null );
				return;
			}
			$this->set_prop( $prop, $value instanceof WC_DateTime ? $value : WC_DateTime::at( is_numeric( $value ) ? (int) $value : strtotime( (string) $value ) ) );
		}
	}

	/** Mirrors plugins/woocommerce/includes/abstracts/abstract-wc-product.php. */
	class WC_Product extends WC_Data {
		/** @var array */
		protected $data = array(
			'name'           => '',
			'slug'           => '',
			'status'         => 'publish',
			'sku'            => '',
			'parent_id'      => 0,
			'price'          => '',
			'regular_price'  => '',
			'sale_price'     => '',
			'manage_stock'   => false,
			'stock_quantity' => null,
			'stock_status'   => 'instock',
			'date_created'   => null,
			'date_modified'  => null,
		);

		/** Mirrors WC_Product::__construct() (abstract-wc-product.php): reads the product when given an id. */
		public function __construct( $product = 0 ) {
			if ( is_numeric( $product ) && $product > 0 ) {
				$this->set_id( $product );
				$this->read();
			}
			$this->set_object_read( true );
		}

		/** Mirrors WC_Product_Data_Store_CPT::read() (includes/data-stores/class-wc-product-data-store-cpt.php). */
		protected function read() {
			$post = get_post( $this->id );
			if ( ! $post ) {
				throw new Exception( 'Invalid product.' );
			}
			$id    = $this->id;
			$stock = get_post_meta( $id, '_stock', true );
			$this->set_props(
				array(
					'name'           => $post->post_title,
					'status'         => $post->post_status,
					'parent_id'      => $post->post_parent,
					'sku'            => get_post_meta( $id, '_sku', true ),
					'price'          => get_post_meta( $id, '_price', true ),
					'regular_price'  => get_post_meta( $id, '_regular_price', true ),
					'sale_price'     => get_post_meta( $id, '_sale_price', true ),
					'manage_stock'   => 'yes' === get_post_meta( $id, '_manage_stock', true ),
					'stock_quantity' => '' === $stock ? null : $stock,
					'stock_status'   => get_post_meta( $id, '_stock_status', true ),
					'date_created'   => strtotime( $post->post_date_gmt . ' UTC' ),
					'date_modified'  => strtotime( $post->post_modified_gmt . ' UTC' ),
				)
			);
		}

		/** Mirrors WC_Product::get_type(). */
		public function get_type() {
			return 'simple';
		}
		/** Mirrors WC_Product::is_type(). */
		public function is_type( $type ) {
			return is_array( $type ) ? in_array( $this->get_type(), $type, true ) : $this->get_type() === $type;
		}
		/** Mirrors WC_Product::get_name(). */
		public function get_name( $context = 'view' ) {
			return $this->get_prop( 'name', $context );
		}
		/** Mirrors WC_Product::get_status(). */
		public function get_status( $context = 'view' ) {
			return $this->get_prop( 'status', $context );
		}
		/** Mirrors WC_Product::get_sku(). */
		public function get_sku( $context = 'view' ) {
			return $this->get_prop( 'sku', $context );
		}
		/** Mirrors WC_Product::get_parent_id(). */
		public function get_parent_id( $context = 'view' ) {
			return (int) $this->get_prop( 'parent_id', $context );
		}
		/** Mirrors WC_Product::get_price(). */
		public function get_price( $context = 'view' ) {
			return $this->get_prop( 'price', $context );
		}
		/** Mirrors WC_Product::get_regular_price(). */
		public function get_regular_price( $context = 'view' ) {
			return $this->get_prop( 'regular_price', $context );
		}
		/** Mirrors WC_Product::get_sale_price(). */
		public function get_sale_price( $context = 'view' ) {
			return $this->get_prop( 'sale_price', $context );
		}
		/** Mirrors WC_Product::get_manage_stock(). */
		public function get_manage_stock( $context = 'view' ) {
			return $this->get_prop( 'manage_stock', $context );
		}
		/** Mirrors WC_Product::managing_stock(). */
		public function managing_stock() {
			return (bool) $this->get_manage_stock();
		}
		/** Mirrors WC_Product::get_stock_quantity(). */
		public function get_stock_quantity( $context = 'view' ) {
			$q = $this->get_prop( 'stock_quantity', $context );
			return null === $q ? null : wc_stock_amount( $q );
		}
		/** Mirrors WC_Product::get_stock_status(). */
		public function get_stock_status( $context = 'view' ) {
			return $this->get_prop( 'stock_status', $context );
		}
		/** Mirrors WC_Product::get_date_created(). */
		public function get_date_created( $context = 'view' ) {
			return $this->get_prop( 'date_created', $context );
		}
		/** Mirrors WC_Product::get_date_modified(). */
		public function get_date_modified( $context = 'view' ) {
			return $this->get_prop( 'date_modified', $context );
		}
		/** Mirrors WC_Product::set_name(). */
		public function set_name( $name ) {
			$this->set_prop( 'name', $name );
		}
		/** Mirrors WC_Product::set_status(). */
		public function set_status( $status ) {
			$this->set_prop( 'status', $status );
		}
		/** Mirrors WC_Product::set_sku(). */
		public function set_sku( $sku ) {
			$this->set_prop( 'sku', (string) $sku );
		}
		/** Mirrors WC_Product::set_parent_id(). */
		public function set_parent_id( $parent_id ) {
			$this->set_prop( 'parent_id', absint( $parent_id ) );
		}
		/** Mirrors WC_Product::set_price(). */
		public function set_price( $price ) {
			$this->set_prop( 'price', (string) $price );
		}
		/** Mirrors WC_Product::set_regular_price() (also sets the active price here). */
		public function set_regular_price( $price ) {
			$this->set_prop( 'regular_price', (string) $price );
			if ( '' === (string) $this->get_sale_price() ) {
				$this->set_prop( 'price', (string) $price );
			}
		}
		/** Mirrors WC_Product::set_sale_price(). */
		public function set_sale_price( $price ) {
			$this->set_prop( 'sale_price', (string) $price );
			if ( '' !== (string) $price ) {
				$this->set_prop( 'price', (string) $price );
			}
		}
		/** Mirrors WC_Product::set_manage_stock(). */
		public function set_manage_stock( $manage_stock ) {
			$this->set_prop( 'manage_stock', (bool) $manage_stock );
		}
		/** Mirrors WC_Product::set_stock_quantity(). */
		public function set_stock_quantity( $quantity ) {
			$this->set_prop( 'stock_quantity', '' !== $quantity && null !== $quantity ? wc_stock_amount( $quantity ) : null );
		}
		/** Mirrors WC_Product::set_stock_status(). */
		public function set_stock_status( $status = 'instock' ) {
			$this->set_prop( 'stock_status', $status );
		}
		/** Mirrors WC_Product::set_date_created(). */
		public function set_date_created( $date = null ) {
			$this->set_date_prop( 'date_created', $date );
		}
		/** Mirrors WC_Product::set_date_modified(). */
		public function set_date_modified( $date = null ) {
			$this->set_date_prop( 'date_modified', $date );
		}

		/** Post type of this product class (WooCommerce: product / product_variation). */
		protected function post_type() {
			return 'product';
		}

		/**
		 * Mirrors WC_Product::save() with WC_Product_Data_Store_CPT::create()/update() and
		 * handle_updated_props() (includes/data-stores/class-wc-product-data-store-cpt.php):
		 * the stock hooks fire after the data is stored, with the product as the only argument.
		 */
		public function save() {
			$creating = ! $this->id;
			if ( $this->managing_stock() && null !== $this->get_stock_quantity() ) {
				$this->set_stock_status( $this->get_stock_quantity() > 0 ? 'instock' : 'outofstock' );
			}
			$updated = $creating ? array_keys( $this->data ) : array_keys( $this->changes );
			if ( $creating ) {
				$id = wp_insert_post(
					array(
						'post_type'   => $this->post_type(),
						'post_title'  => $this->get_name(),
						'post_status' => $this->get_status(),
						'post_parent' => $this->get_parent_id(),
					),
					true
				);
				if ( is_wp_error( $id ) ) {
					throw new Exception( $id->get_error_message() );
				}
				$this->id = $id;
				update_post_meta( $id, '_standin_type', $this->get_type() );
			} elseif ( array_intersect( array( 'name', 'status', 'parent_id' ), $updated ) ) {
				wp_update_post(
					array(
						'ID'          => $this->id,
						'post_title'  => $this->get_name(),
						'post_status' => $this->get_status(),
						'post_parent' => $this->get_parent_id(),
					)
				);
			}
			$meta = array(
				'sku'            => '_sku',
				'price'          => '_price',
				'regular_price'  => '_regular_price',
				'sale_price'     => '_sale_price',
				'stock_quantity' => '_stock',
				'stock_status'   => '_stock_status',
				'manage_stock'   => '_manage_stock',
			);
			foreach ( $meta as $prop => $key ) {
				if ( in_array( $prop, $updated, true ) ) {
					$value = $this->get_prop( $prop );
					if ( 'manage_stock' === $prop ) {
						$value = $value ? 'yes' : 'no';
					}
					update_post_meta( $this->id, $key, null === $value ? '' : $value );
				}
			}
			if ( ! $creating ) {
				// WooCommerce bumps post_modified on every save.
				wp_update_post( array( 'ID' => $this->id ) );
			}
			$post = get_post( $this->id );
			$this->set_date_modified( strtotime( $post->post_modified_gmt . ' UTC' ) );
			if ( $creating ) {
				$this->set_date_created( strtotime( $post->post_date_gmt . ' UTC' ) );
			}
			$this->apply_changes();
			if ( in_array( 'stock_quantity', $updated, true ) && $this->managing_stock() ) {
				if ( $this->is_type( 'variation' ) ) {
					do_action( 'woocommerce_variation_set_stock', $this );
				} else {
					do_action( 'woocommerce_product_set_stock', $this );
				}
			}
			return $this->id;
		}
	}

	/** Mirrors plugins/woocommerce/includes/class-wc-product-simple.php. */
	class WC_Product_Simple extends WC_Product {
		/** Mirrors WC_Product_Simple::get_type(). */
		public function get_type() {
			return 'simple';
		}
	}

	/** Mirrors plugins/woocommerce/includes/class-wc-product-variable.php. */
	class WC_Product_Variable extends WC_Product {
		/** Mirrors WC_Product_Variable::get_type(). */
		public function get_type() {
			return 'variable';
		}
		/** Mirrors WC_Product_Variable::get_children(). */
		public function get_children() {
			return array_map( 'intval', get_posts( array( 'post_type' => 'product_variation', 'post_parent' => $this->get_id(), 'fields' => 'ids', 'posts_per_page' => -1, 'post_status' => 'any', 'orderby' => 'ID', 'order' => 'ASC' ) ) );
		}
	}

	/** Mirrors plugins/woocommerce/includes/class-wc-product-variation.php. */
	class WC_Product_Variation extends WC_Product_Simple {
		/** Mirrors WC_Product_Variation::get_type(). */
		public function get_type() {
			return 'variation';
		}
		/** Stored as product_variation posts, as in WC_Product_Variation_Data_Store_CPT. */
		protected function post_type() {
			return 'product_variation';
		}
	}

	/** Mirrors wc_get_product() in plugins/woocommerce/includes/wc-product-functions.php. */
	function wc_get_product( $the_product = false, $deprecated = array() ) {
		unset( $deprecated );
		$id = $the_product instanceof WC_Product ? $the_product->get_id() : absint( $the_product );
		$post = $id ? get_post( $id ) : null;
		if ( ! $post || ! in_array( $post->post_type, array( 'product', 'product_variation' ), true ) ) {
			return false;
		}
		if ( 'product_variation' === $post->post_type ) {
			return new WC_Product_Variation( $id );
		}
		return 'variable' === get_post_meta( $id, '_standin_type', true ) ? new WC_Product_Variable( $id ) : new WC_Product_Simple( $id );
	}

	/** Mirrors wc_get_product_types() in plugins/woocommerce/includes/wc-product-functions.php. */
	function wc_get_product_types() {
		return array(
			'simple'   => 'Simple product',
			'grouped'  => 'Grouped product',
			'external' => 'External/Affiliate product',
			'variable' => 'Variable product',
		);
	}

	/**
	 * Mirrors wc_get_products() in plugins/woocommerce/includes/wc-product-functions.php
	 * (WC_Product_Query): type, status, limit, page, paginate, orderby, order, return.
	 */
	function wc_get_products( $args ) {
		$args   = wp_parse_args( $args, array( 'type' => array_keys( wc_get_product_types() ), 'status' => array( 'draft', 'pending', 'private', 'publish' ), 'limit' => get_option( 'posts_per_page' ), 'page' => 1, 'paginate' => false, 'orderby' => 'date', 'order' => 'DESC', 'return' => 'objects' ) );
		$types  = (array) $args['type'];
		$ptypes = array();
		if ( array_diff( $types, array( 'variation' ) ) ) {
			$ptypes[] = 'product';
		}
		if ( in_array( 'variation', $types, true ) ) {
			$ptypes[] = 'product_variation';
		}
		$q = new WP_Query(
			array(
				'post_type'      => $ptypes,
				'post_status'    => (array) $args['status'],
				'posts_per_page' => (int) $args['limit'],
				'paged'          => (int) $args['page'],
				'orderby'        => $args['orderby'],
				'order'          => $args['order'],
				'fields'         => 'ids',
				'no_found_rows'  => false,
			)
		);
		$ids      = array_map( 'intval', $q->posts );
		$products = 'ids' === $args['return'] ? $ids : array_values( array_filter( array_map( 'wc_get_product', $ids ) ) );
		if ( $args['paginate'] ) {
			return (object) array(
				'products'      => $products,
				'total'         => (int) $q->found_posts,
				'max_num_pages' => (int) $q->max_num_pages,
			);
		}
		return $products;
	}

	/**
	 * Mirrors wc_update_product_stock() in plugins/woocommerce/includes/wc-stock-functions.php:
	 * stores the stock directly, then fires the stock hook with a fresh product object.
	 */
	function wc_update_product_stock( $product, $stock_quantity = null, $operation = 'set', $updating = false ) {
		unset( $updating );
		$product = wc_get_product( $product );
		if ( ! $product || null === $stock_quantity || ! $product->managing_stock() ) {
			return $product ? $product->get_stock_quantity() : false;
		}
		$current = (int) $product->get_stock_quantity();
		$new     = 'increase' === $operation ? $current + $stock_quantity : ( 'decrease' === $operation ? $current - $stock_quantity : $stock_quantity );
		update_post_meta( $product->get_id(), '_stock', wc_stock_amount( $new ) );
		update_post_meta( $product->get_id(), '_stock_status', $new > 0 ? 'instock' : 'outofstock' );
		wp_update_post( array( 'ID' => $product->get_id() ) );
		$product_with_stock = wc_get_product( $product->get_id() );
		if ( $product_with_stock->is_type( 'variation' ) ) {
			do_action( 'woocommerce_variation_set_stock', $product_with_stock );
		} else {
			do_action( 'woocommerce_product_set_stock', $product_with_stock );
		}
		return $product_with_stock->get_stock_quantity();
	}

	/** Mirrors plugins/woocommerce/includes/class-wc-order-item-product.php. */
	class WC_Order_Item_Product {
		/** @var array */
		protected $data = array(
			'id'           => 0,
			'name'         => '',
			'product_id'   => 0,
			'variation_id' => 0,
			'quantity'     => 1,
			'subtotal'     => '0',
			'total'        => '0',
		);

		/** Mirrors WC_Order_Item::__construct() (abstract data in class-wc-order-item.php). */
		public function __construct( $data = array() ) {
			$this->data = array_merge( $this->data, is_array( $data ) ? $data : array() );
		}
		/** Mirrors WC_Order_Item::get_id(). */
		public function get_id() {
			return (int) $this->data['id'];
		}
		/** Mirrors WC_Data::set_id(). */
		public function set_id( $id ) {
			$this->data['id'] = (int) $id;
		}
		/** Mirrors WC_Order_Item::get_name(). */
		public function get_name( $context = 'view' ) {
			return $this->data['name'];
		}
		/** Mirrors WC_Order_Item::get_type(). */
		public function get_type() {
			return 'line_item';
		}
		/** Mirrors WC_Order_Item_Product::get_product_id(). */
		public function get_product_id( $context = 'view' ) {
			return (int) $this->data['product_id'];
		}
		/** Mirrors WC_Order_Item_Product::get_variation_id(). */
		public function get_variation_id( $context = 'view' ) {
			return (int) $this->data['variation_id'];
		}
		/** Mirrors WC_Order_Item_Product::get_quantity(). */
		public function get_quantity( $context = 'view' ) {
			return (int) $this->data['quantity'];
		}
		/** Mirrors WC_Order_Item_Product::get_subtotal(). */
		public function get_subtotal( $context = 'view' ) {
			return $this->data['subtotal'];
		}
		/** Mirrors WC_Order_Item_Product::get_total(). */
		public function get_total( $context = 'view' ) {
			return $this->data['total'];
		}
		/** Mirrors WC_Order_Item_Product::get_product(). */
		public function get_product() {
			return wc_get_product( $this->get_variation_id() ? $this->get_variation_id() : $this->get_product_id() );
		}
		/** Storage helper (WooCommerce stores items in woocommerce_order_items; the stand-in in post meta). */
		public function to_array() {
			return $this->data;
		}
	}

	/** Mirrors plugins/woocommerce/includes/class-wc-order.php and abstracts/abstract-wc-order.php. */
	class WC_Order extends WC_Data {
		/** @var array */
		protected $data = array(
			'status'         => 'pending',
			'currency'       => 'EUR',
			'total'          => '0',
			'customer_id'    => 0,
			'billing_email'  => '',
			'billing_first_name' => '',
			'billing_last_name'  => '',
			'date_created'   => null,
			'date_modified'  => null,
			'date_paid'      => null,
			'date_completed' => null,
		);
		/** @var WC_Order_Item_Product[] Items keyed by item id (new items: negative keys until saved). */
		protected $items = array();
		/** @var bool */
		protected $items_changed = false;
		/** @var array|false Mirrors WC_Order::$status_transition. */
		protected $status_transition = false;

		/** Mirrors WC_Abstract_Order::__construct(). */
		public function __construct( $order = 0 ) {
			if ( is_numeric( $order ) && $order > 0 ) {
				$this->set_id( $order );
				$this->read();
			}
			$this->set_object_read( true );
		}

		/** Mirrors WC_Order_Data_Store_CPT::read() (includes/data-stores/class-wc-order-data-store-cpt.php). */
		protected function read() {
			$post = get_post( $this->id );
			if ( ! $post || 'shop_order' !== $post->post_type ) {
				throw new Exception( 'Invalid order.' );
			}
			$id = $this->id;
			$this->set_props(
				array(
					'status'             => 0 === strpos( $post->post_status, 'wc-' ) ? substr( $post->post_status, 3 ) : $post->post_status,
					'currency'           => get_post_meta( $id, '_order_currency', true ),
					'total'              => get_post_meta( $id, '_order_total', true ),
					'customer_id'        => (int) get_post_meta( $id, '_customer_user', true ),
					'billing_email'      => get_post_meta( $id, '_billing_email', true ),
					'billing_first_name' => get_post_meta( $id, '_billing_first_name', true ),
					'billing_last_name'  => get_post_meta( $id, '_billing_last_name', true ),
					'date_created'       => strtotime( $post->post_date_gmt . ' UTC' ),
					'date_modified'      => strtotime( $post->post_modified_gmt . ' UTC' ),
					'date_paid'          => get_post_meta( $id, '_date_paid', true ),
					'date_completed'     => get_post_meta( $id, '_date_completed', true ),
				)
			);
			foreach ( (array) get_post_meta( $id, '_standin_items', true ) as $row ) {
				if ( is_array( $row ) ) {
					$this->items[ (int) $row['id'] ] = new WC_Order_Item_Product( $row );
				}
			}
		}

		/** Mirrors WC_Order::get_order_number(). */
		public function get_order_number() {
			return (string) apply_filters( 'woocommerce_order_number', $this->get_id(), $this );
		}
		/** Mirrors WC_Abstract_Order::get_status(). */
		public function get_status( $context = 'view' ) {
			return $this->get_prop( 'status', $context );
		}
		/** Mirrors WC_Abstract_Order::get_currency(). */
		public function get_currency( $context = 'view' ) {
			return $this->get_prop( 'currency', $context );
		}
		/** Mirrors WC_Abstract_Order::get_total(). */
		public function get_total( $context = 'view' ) {
			return $this->get_prop( 'total', $context );
		}
		/** Mirrors WC_Order::get_customer_id(). */
		public function get_customer_id( $context = 'view' ) {
			return (int) $this->get_prop( 'customer_id', $context );
		}
		/** Mirrors WC_Order::get_billing_email(). */
		public function get_billing_email( $context = 'view' ) {
			return $this->get_prop( 'billing_email', $context );
		}
		/** Mirrors WC_Order::get_billing_first_name(). */
		public function get_billing_first_name( $context = 'view' ) {
			return $this->get_prop( 'billing_first_name', $context );
		}
		/** Mirrors WC_Order::get_billing_last_name(). */
		public function get_billing_last_name( $context = 'view' ) {
			return $this->get_prop( 'billing_last_name', $context );
		}
		/** Mirrors WC_Abstract_Order::get_date_created(). */
		public function get_date_created( $context = 'view' ) {
			return $this->get_prop( 'date_created', $context );
		}
		/** Mirrors WC_Abstract_Order::get_date_modified(). */
		public function get_date_modified( $context = 'view' ) {
			return $this->get_prop( 'date_modified', $context );
		}
		/** Mirrors WC_Order::get_date_paid(). */
		public function get_date_paid( $context = 'view' ) {
			return $this->get_prop( 'date_paid', $context );
		}
		/** Mirrors WC_Order::get_date_completed(). */
		public function get_date_completed( $context = 'view' ) {
			return $this->get_prop( 'date_completed', $context );
		}
		/** Mirrors WC_Abstract_Order::set_currency(). */
		public function set_currency( $value ) {
			$this->set_prop( 'currency', $value );
		}
		/** Mirrors WC_Abstract_Order::set_total(). */
		public function set_total( $value, $deprecated = '' ) {
			$this->set_prop( 'total', (string) $value );
		}
		/** Mirrors WC_Order::set_customer_id(). */
		public function set_customer_id( $value ) {
			$this->set_prop( 'customer_id', absint( $value ) );
		}
		/** Mirrors WC_Order::set_billing_email(). */
		public function set_billing_email( $value ) {
			$this->set_prop( 'billing_email', (string) $value );
		}
		/** Mirrors WC_Order::set_billing_first_name(). */
		public function set_billing_first_name( $value ) {
			$this->set_prop( 'billing_first_name', (string) $value );
		}
		/** Mirrors WC_Order::set_billing_last_name(). */
		public function set_billing_last_name( $value ) {
			$this->set_prop( 'billing_last_name', (string) $value );
		}
		/** Mirrors WC_Abstract_Order::set_date_created(). */
		public function set_date_created( $date = null ) {
			$this->set_date_prop( 'date_created', $date );
		}
		/** Mirrors WC_Abstract_Order::set_date_modified(). */
		public function set_date_modified( $date = null ) {
			$this->set_date_prop( 'date_modified', $date );
		}
		/** Mirrors WC_Order::set_date_paid(). */
		public function set_date_paid( $date = null ) {
			$this->set_date_prop( 'date_paid', $date );
		}
		/** Mirrors WC_Order::set_date_completed(). */
		public function set_date_completed( $date = null ) {
			$this->set_date_prop( 'date_completed', $date );
		}

		/** Mirrors WC_Order::set_status(): records the transition for status_transition(). */
		public function set_status( $new_status, $note = '', $manual_update = false ) {
			$new_status = 0 === strpos( $new_status, 'wc-' ) ? substr( $new_status, 3 ) : $new_status;
			$old_status = $this->get_status();
			$this->set_prop( 'status', $new_status );
			if ( true === $this->object_read && ! empty( $old_status ) && $old_status !== $new_status ) {
				$this->status_transition = array(
					'from' => ! empty( $this->status_transition['from'] ) ? $this->status_transition['from'] : $old_status,
					'to'   => $new_status,
				);
			}
			if ( 'completed' === $new_status ) {
				$this->set_date_completed( time() );
			}
			if ( in_array( $new_status, array( 'processing', 'completed' ), true ) && ! $this->get_date_paid() ) {
				$this->set_date_paid( time() );
			}
			return array( 'from' => $old_status, 'to' => $new_status );
		}

		/** Mirrors WC_Order::update_status(). */
		public function update_status( $new_status, $note = '', $manual = false ) {
			$this->set_status( $new_status, $note, $manual );
			$this->save();
			return true;
		}

		/** Mirrors WC_Abstract_Order::get_items(). */
		public function get_items( $types = 'line_item' ) {
			$types = (array) $types;
			return in_array( 'line_item', $types, true ) ? $this->items : array();
		}

		/** Mirrors WC_Abstract_Order::add_item(). */
		public function add_item( $item ) {
			$this->items[ -1 - count( $this->items ) ] = $item;
			$this->items_changed                   = true;
		}

		/** Mirrors WC_Abstract_Order::add_product(). */
		public function add_product( $product, $qty = 1, $args = array() ) {
			$total = (string) ( (float) $product->get_price() * $qty );
			$item  = new WC_Order_Item_Product(
				array(
					'name'         => $product->get_name(),
					'product_id'   => $product->is_type( 'variation' ) ? $product->get_parent_id() : $product->get_id(),
					'variation_id' => $product->is_type( 'variation' ) ? $product->get_id() : 0,
					'quantity'     => (int) $qty,
					'subtotal'     => $args['subtotal'] ?? $total,
					'total'        => $args['total'] ?? $total,
				)
			);
			$this->add_item( $item );
			return $item->get_id();
		}

		/** Mirrors WC_Abstract_Order::calculate_totals() (line items only). */
		public function calculate_totals( $and_taxes = true ) {
			$sum = 0.0;
			foreach ( $this->items as $item ) {
				$sum += (float) $item->get_total();
			}
			$this->set_total( number_format( $sum, 2, '.', '' ) );
			return $this->get_total();
		}

		/**
		 * Mirrors WC_Order::save() → WC_Abstract_Order::save() → data store create()/update(),
		 * then save_items(), then status_transition(). As in WooCommerce,
		 * `woocommerce_new_order` fires from create() BEFORE the items are saved.
		 */
		public function save() {
			if ( ! $this->id ) {
				$id = wp_insert_post(
					array(
						'post_type'   => 'shop_order',
						'post_status' => 'wc-' . $this->get_status(),
						'post_title'  => 'Order',
					),
					true
				);
				if ( is_wp_error( $id ) ) {
					throw new Exception( $id->get_error_message() );
				}
				$this->id = $id;
				$this->store_meta();
				$this->apply_changes();
				// includes/data-stores/class-wc-order-data-store-cpt.php, create().
				do_action( 'woocommerce_new_order', $this->id, $this );
			} else {
				wp_update_post(
					array(
						'ID'          => $this->id,
						'post_status' => 'wc-' . $this->get_status(),
					)
				);
				$this->store_meta();
				$this->apply_changes();
				// includes/data-stores/class-wc-order-data-store-cpt.php, update().
				do_action( 'woocommerce_update_order', $this->id, $this );
			}
			$this->save_items();
			$this->status_transition();
			return $this->id;
		}

		/** Writes props to post meta (WC_Order_Data_Store_CPT::update_post_meta()). */
		protected function store_meta() {
			$post = get_post( $this->id );
			$this->set_date_created( strtotime( $post->post_date_gmt . ' UTC' ) );
			$this->set_date_modified( strtotime( $post->post_modified_gmt . ' UTC' ) );
			update_post_meta( $this->id, '_order_currency', $this->get_currency() );
			update_post_meta( $this->id, '_order_total', $this->get_total() );
			update_post_meta( $this->id, '_customer_user', $this->get_customer_id() );
			update_post_meta( $this->id, '_billing_email', $this->get_billing_email() );
			update_post_meta( $this->id, '_billing_first_name', $this->get_billing_first_name() );
			update_post_meta( $this->id, '_billing_last_name', $this->get_billing_last_name() );
			update_post_meta( $this->id, '_date_paid', $this->get_date_paid() ? $this->get_date_paid()->getTimestamp() : '' );
			update_post_meta( $this->id, '_date_completed', $this->get_date_completed() ? $this->get_date_completed()->getTimestamp() : '' );
		}

		/** Mirrors WC_Abstract_Order::save_items(). */
		protected function save_items() {
			if ( ! $this->items_changed ) {
				return;
			}
			$next  = (int) get_option( 'standin_next_order_item_id', 1 );
			$items = array();
			foreach ( $this->items as $key => $item ) {
				if ( $key < 0 || ! $item->get_id() ) {
					$item->set_id( $next++ );
				}
				$items[ $item->get_id() ] = $item;
			}
			update_option( 'standin_next_order_item_id', $next );
			$this->items = $items;
			update_post_meta( $this->id, '_standin_items', array_values( array_map( function ( $i ) { return $i->to_array(); }, $items ) ) );
			$this->items_changed = false;
		}

		/** Mirrors WC_Order::status_transition() (includes/class-wc-order.php). */
		protected function status_transition() {
			$status_transition = $this->status_transition;
			$this->status_transition = false;
			if ( $status_transition && $status_transition['from'] !== $status_transition['to'] ) {
				do_action( 'woocommerce_order_status_' . $status_transition['to'], $this->get_id(), $this );
				do_action( 'woocommerce_order_status_' . $status_transition['from'] . '_to_' . $status_transition['to'], $this->get_id(), $this );
				do_action( 'woocommerce_order_status_changed', $this->get_id(), $status_transition['from'], $status_transition['to'], $this );
			}
		}
	}

	/** Mirrors wc_get_order() in plugins/woocommerce/includes/wc-order-functions.php. */
	function wc_get_order( $the_order = false ) {
		$id   = $the_order instanceof WC_Order ? $the_order->get_id() : absint( $the_order );
		$post = $id ? get_post( $id ) : null;
		return ( $post && 'shop_order' === $post->post_type ) ? new WC_Order( $id ) : false;
	}

	/** Mirrors wc_create_order() in plugins/woocommerce/includes/wc-core-functions.php: saves the (empty) order at once. */
	function wc_create_order( $args = array() ) {
		$order = new WC_Order();
		if ( isset( $args['status'] ) ) {
			$order->set_status( $args['status'] );
		}
		if ( isset( $args['customer_id'] ) ) {
			$order->set_customer_id( $args['customer_id'] );
		}
		$order->save();
		return $order;
	}

	/**
	 * Mirrors wc_get_orders() in plugins/woocommerce/includes/wc-order-functions.php (WC_Order_Query):
	 * type, limit, page, paginate, orderby, order, return, billing_email, date_modified ('>=<ts>').
	 */
	function wc_get_orders( $args ) {
		$args  = wp_parse_args( $args, array( 'limit' => get_option( 'posts_per_page' ), 'page' => 1, 'paginate' => false, 'orderby' => 'date', 'order' => 'DESC', 'return' => 'objects' ) );
		$query = array(
			'post_type'      => 'shop_order',
			'post_status'    => 'any',
			'posts_per_page' => (int) $args['limit'],
			'paged'          => (int) $args['page'],
			'orderby'        => $args['orderby'],
			'order'          => $args['order'],
			'fields'         => 'ids',
		);
		if ( isset( $args['billing_email'] ) ) {
			$query['meta_query'] = array( array( 'key' => '_billing_email', 'value' => $args['billing_email'] ) ); // phpcs:ignore WordPress.DB.SlowDBQuery
		}
		if ( isset( $args['date_modified'] ) && preg_match( '/^>=(\d+)$/', (string) $args['date_modified'], $m ) ) {
			$query['date_query'] = array( array( 'column' => 'post_modified_gmt', 'after' => gmdate( 'Y-m-d H:i:s', (int) $m[1] ), 'inclusive' => true ) );
		}
		$q      = new WP_Query( $query );
		$ids    = array_map( 'intval', $q->posts );
		$orders = 'ids' === $args['return'] ? $ids : array_values( array_filter( array_map( 'wc_get_order', $ids ) ) );
		if ( $args['paginate'] ) {
			return (object) array(
				'orders'        => $orders,
				'total'         => (int) $q->found_posts,
				'max_num_pages' => (int) $q->max_num_pages,
			);
		}
		return $orders;
	}

	/** Mirrors plugins/woocommerce/includes/class-wc-customer.php (data in the user and user meta, as WC_Customer_Data_Store). */
	class WC_Customer extends WC_Data {
		/** @var array */
		protected $data = array(
			'email'         => '',
			'first_name'    => '',
			'last_name'     => '',
			'display_name'  => '',
			'billing'       => array(
				'first_name' => '', 'last_name' => '', 'company' => '', 'email' => '', 'phone' => '',
				'city' => '', 'postcode' => '', 'country' => '',
			),
			'date_created'  => null,
			'date_modified' => null,
		);

		/** Mirrors WC_Customer::__construct( $data = 0, $is_session = false ). */
		public function __construct( $data = 0, $is_session = false ) {
			if ( is_numeric( $data ) && $data > 0 ) {
				$this->set_id( $data );
				$this->read();
			}
			$this->set_object_read( true );
		}

		/** Mirrors WC_Customer_Data_Store::read() (includes/data-stores/class-wc-customer-data-store.php). */
		protected function read() {
			$user = get_user_by( 'id', $this->id );
			if ( ! $user ) {
				throw new Exception( 'Invalid customer.' );
			}
			$billing = array();
			foreach ( array_keys( $this->data['billing'] ) as $field ) {
				$billing[ $field ] = (string) get_user_meta( $this->id, 'billing_' . $field, true );
			}
			$this->data = array_merge(
				$this->data,
				array(
					'email'         => $user->user_email,
					'first_name'    => (string) get_user_meta( $this->id, 'first_name', true ),
					'last_name'     => (string) get_user_meta( $this->id, 'last_name', true ),
					'display_name'  => $user->display_name,
					'billing'       => $billing,
					'date_created'  => WC_DateTime::at( strtotime( $user->user_registered . ' UTC' ) ),
					'date_modified' => get_user_meta( $this->id, 'last_update', true ) ? WC_DateTime::at( (int) get_user_meta( $this->id, 'last_update', true ) ) : null,
				)
			);
		}

		/** Mirrors WC_Customer::get_email(). */
		public function get_email( $context = 'view' ) {
			return $this->get_prop( 'email', $context );
		}
		/** Mirrors WC_Customer::get_first_name(). */
		public function get_first_name( $context = 'view' ) {
			return $this->get_prop( 'first_name', $context );
		}
		/** Mirrors WC_Customer::get_last_name(). */
		public function get_last_name( $context = 'view' ) {
			return $this->get_prop( 'last_name', $context );
		}
		/** Mirrors WC_Customer::get_display_name(). */
		public function get_display_name( $context = 'view' ) {
			return $this->get_prop( 'display_name', $context );
		}
		/** Mirrors WC_Customer::get_date_created(). */
		public function get_date_created( $context = 'view' ) {
			return $this->get_prop( 'date_created', $context );
		}
		/** Mirrors WC_Customer::get_date_modified(). */
		public function get_date_modified( $context = 'view' ) {
			return $this->get_prop( 'date_modified', $context );
		}
		/** Mirrors WC_Customer::get_address_prop() used by the billing getters. */
		protected function get_billing( $field ) {
			$billing = $this->get_prop( 'billing' );
			return (string) ( $billing[ $field ] ?? '' );
		}
		/** Mirrors WC_Customer::set_address_prop() used by the billing setters. */
		protected function set_billing( $field, $value ) {
			$billing           = $this->get_prop( 'billing' );
			$billing[ $field ] = (string) $value;
			$this->set_prop( 'billing', $billing );
		}
		/** Mirrors WC_Customer::get_billing_first_name(). */
		public function get_billing_first_name( $context = 'view' ) {
			return $this->get_billing( 'first_name' );
		}
		/** Mirrors WC_Customer::get_billing_last_name(). */
		public function get_billing_last_name( $context = 'view' ) {
			return $this->get_billing( 'last_name' );
		}
		/** Mirrors WC_Customer::get_billing_company(). */
		public function get_billing_company( $context = 'view' ) {
			return $this->get_billing( 'company' );
		}
		/** Mirrors WC_Customer::get_billing_email(). */
		public function get_billing_email( $context = 'view' ) {
			return $this->get_billing( 'email' );
		}
		/** Mirrors WC_Customer::get_billing_phone(). */
		public function get_billing_phone( $context = 'view' ) {
			return $this->get_billing( 'phone' );
		}
		/** Mirrors WC_Customer::get_billing_city(). */
		public function get_billing_city( $context = 'view' ) {
			return $this->get_billing( 'city' );
		}
		/** Mirrors WC_Customer::get_billing_postcode(). */
		public function get_billing_postcode( $context = 'view' ) {
			return $this->get_billing( 'postcode' );
		}
		/** Mirrors WC_Customer::get_billing_country(). */
		public function get_billing_country( $context = 'view' ) {
			return $this->get_billing( 'country' );
		}
		/** Mirrors WC_Customer::set_email(). */
		public function set_email( $value ) {
			$this->set_prop( 'email', sanitize_email( $value ) );
		}
		/** Mirrors WC_Customer::set_first_name(). */
		public function set_first_name( $value ) {
			$this->set_prop( 'first_name', $value );
		}
		/** Mirrors WC_Customer::set_last_name(). */
		public function set_last_name( $value ) {
			$this->set_prop( 'last_name', $value );
		}
		/** Mirrors WC_Customer::set_display_name(). */
		public function set_display_name( $value ) {
			$this->set_prop( 'display_name', $value );
		}
		/** Mirrors WC_Customer::set_billing_first_name(). */
		public function set_billing_first_name( $value ) {
			$this->set_billing( 'first_name', $value );
		}
		/** Mirrors WC_Customer::set_billing_last_name(). */
		public function set_billing_last_name( $value ) {
			$this->set_billing( 'last_name', $value );
		}
		/** Mirrors WC_Customer::set_billing_city(). */
		public function set_billing_city( $value ) {
			$this->set_billing( 'city', $value );
		}
		/** Mirrors WC_Customer::set_billing_phone(). */
		public function set_billing_phone( $value ) {
			$this->set_billing( 'phone', $value );
		}
		/** Mirrors WC_Customer::set_billing_email(). */
		public function set_billing_email( $value ) {
			$this->set_billing( 'email', $value );
		}

		/**
		 * Mirrors WC_Customer::save() → WC_Customer_Data_Store::update(), which ends with
		 * `do_action( 'woocommerce_update_customer', $customer->get_id(), $customer )`
		 * (includes/data-stores/class-wc-customer-data-store.php). Creating through the stand-in
		 * is not supported: use wc_create_new_customer().
		 */
		public function save() {
			if ( ! $this->id ) {
				throw new Exception( 'stand-in: create customers with wc_create_new_customer()' );
			}
			wp_update_user(
				array(
					'ID'           => $this->id,
					'user_email'   => $this->get_email(),
					'first_name'   => $this->get_first_name(),
					'last_name'    => $this->get_last_name(),
					'display_name' => $this->get_display_name(),
				)
			);
			foreach ( (array) $this->get_prop( 'billing' ) as $field => $value ) {
				update_user_meta( $this->id, 'billing_' . $field, $value );
			}
			$now = time();
			update_user_meta( $this->id, 'last_update', $now );
			$this->set_prop( 'date_modified', WC_DateTime::at( $now ) );
			$this->apply_changes();
			do_action( 'woocommerce_update_customer', $this->id, $this );
			return $this->id;
		}
	}

	/**
	 * Mirrors wc_create_new_customer() in plugins/woocommerce/includes/wc-user-functions.php:
	 * wp_insert_user() with the customer role, then
	 * `do_action( 'woocommerce_created_customer', $customer_id, $new_customer_data, $password_generated )`.
	 */
	function wc_create_new_customer( $email, $username = '', $password = '', $args = array() ) {
		$password_generated = '' === $password;
		$new_customer_data  = array_merge(
			$args,
			array(
				'user_login' => '' !== $username ? $username : sanitize_user( current( explode( '@', $email ) ), true ),
				'user_pass'  => $password_generated ? wp_generate_password() : $password,
				'user_email' => $email,
				'role'       => 'customer',
			)
		);
		$customer_id = wp_insert_user( $new_customer_data );
		if ( is_wp_error( $customer_id ) ) {
			return $customer_id;
		}
		do_action( 'woocommerce_created_customer', $customer_id, $new_customer_data, $password_generated );
		return $customer_id;
	}

	/** What WooCommerce's installer sets up (WC_Install::create_roles() in includes/class-wc-install.php). */
	function standin_wc_install() {
		if ( ! get_role( 'customer' ) ) {
			add_role( 'customer', 'Customer', array( 'read' => true ) );
		}
		$admin = get_role( 'administrator' );
		if ( $admin && ! $admin->has_cap( 'manage_woocommerce' ) ) {
			$admin->add_cap( 'manage_woocommerce' );
		}
	}
}
