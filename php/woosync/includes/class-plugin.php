<?php
/**
 * Composition root: builds the parts and wires their hooks.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * The plugin. Builds every part once, hands each its dependencies, and calls their register()
 * methods; hooks are wired only there.
 */
class Plugin {

	/**
	 * Singleton.
	 *
	 * @var Plugin|null
	 */
	private static $instance = null;

	/**
	 * Parts.
	 *
	 * @var Settings
	 */
	private $settings;

	/**
	 * Loop guard.
	 *
	 * @var Loop_Guard
	 */
	private $guard;

	/**
	 * Fallback table.
	 *
	 * @var Fallback_Queue
	 */
	private $fallback;

	/**
	 * Dispatcher.
	 *
	 * @var Dispatcher
	 */
	private $dispatcher;

	/**
	 * Endpoint sync.
	 *
	 * @var Endpoint_Sync
	 */
	private $endpoint_sync;

	/**
	 * Admin notices.
	 *
	 * @var Admin_Notices
	 */
	private $notices;

	/**
	 * Whether register() ran.
	 *
	 * @var bool
	 */
	private $registered = false;

	/**
	 * The plugin.
	 *
	 * @return Plugin
	 */
	public static function instance() {
		if ( null === self::$instance ) {
			self::$instance = new self();
		}
		return self::$instance;
	}

	/**
	 * Builds the parts.
	 */
	private function __construct() {
		$this->settings      = new Settings();
		$this->guard         = new Loop_Guard( $this->settings );
		$this->fallback      = new Fallback_Queue();
		$this->dispatcher    = new Dispatcher( $this->guard, $this->fallback );
		$this->endpoint_sync = new Endpoint_Sync( $this->settings );
		$this->notices       = new Admin_Notices( $this->fallback );
		$this->settings->init( $this->endpoint_sync, $this->fallback );
	}

	/**
	 * Loop guard (for woosync_suppress()).
	 *
	 * @return Loop_Guard
	 */
	public function loop_guard() {
		return $this->guard;
	}

	/**
	 * Dispatcher.
	 *
	 * @return Dispatcher
	 */
	public function dispatcher() {
		return $this->dispatcher;
	}

	/**
	 * Fallback table.
	 *
	 * @return Fallback_Queue
	 */
	public function fallback() {
		return $this->fallback;
	}

	/**
	 * Settings.
	 *
	 * @return Settings
	 */
	public function settings() {
		return $this->settings;
	}

	/**
	 * Endpoint sync.
	 *
	 * @return Endpoint_Sync
	 */
	public function endpoint_sync() {
		return $this->endpoint_sync;
	}

	/**
	 * Admin notices.
	 *
	 * @return Admin_Notices
	 */
	public function notices() {
		return $this->notices;
	}

	/**
	 * Wires every hook.
	 */
	public function register() {
		if ( $this->registered ) {
			return;
		}
		$this->registered = true;

		add_action( 'plugins_loaded', array( $this, 'boot' ), 0 );
		add_action( 'switch_blog', array( $this, 'on_switch_blog' ), 10, 2 );
		add_action( 'before_woocommerce_init', array( $this, 'declare_compatibility' ) );
		add_action( 'init', array( $this, 'load_textdomain' ) );
		add_action( Fallback_Queue::CRON_HOOK, array( $this, 'replay_fallback' ) );

		( new Product_Hooks( $this->dispatcher ) )->register();
		( new Order_Hooks( $this->dispatcher ) )->register();
		( new Customer_Hooks( $this->dispatcher ) )->register();
		( new Privacy( $this->fallback ) )->register();
		$this->settings->register();
		$this->notices->register();
		Wpdb_Outbox::register();
		Metrics_Endpoint::register();
		Site_Health::register();
		if ( class_exists( __NAMESPACE__ . '\Log_Page' ) ) {
			Log_Page::register(); // WooCommerce → WooSync log (admin only hooks).
		}

		if ( defined( 'WP_CLI' ) && WP_CLI && class_exists( '\WP_CLI' ) ) {
			require_once __DIR__ . '/class-cli-command.php';
			\WP_CLI::add_command( 'woosync', CLI_Command::class );
			require_once __DIR__ . '/class-outbox-commands.php';
			Outbox_Commands::register();
		}
	}

	/**
	 * Every request and CLI run: point the extension at this site's outbox, make sure the
	 * fallback table exists, push changed settings, and schedule a replay when events wait.
	 */
	public function boot() {
		try {
			Fallback_Queue::maybe_install();
			Outbox_Location::configure();
			$this->settings->migrate_secret();
			$this->endpoint_sync->maybe_push();
			if ( Extension::loaded() && $this->fallback->count() > 0 ) {
				Fallback_Queue::schedule_soon();
			}
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
	}

	/**
	 * Multisite: switch_to_blog() also switches the outbox, so events land in their site's file.
	 *
	 * @param int $new_blog_id New blog id.
	 * @param int $prev_blog_id Previous blog id.
	 */
	public function on_switch_blog( $new_blog_id, $prev_blog_id ) {
		if ( (int) $new_blog_id === (int) $prev_blog_id || ! did_action( 'plugins_loaded' ) ) {
			return;
		}
		try {
			if ( Outbox_Location::chosen_by_plugin() ) {
				Outbox_Location::configure();
			}
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
	}

	/**
	 * WP-Cron: replay the fallback table.
	 */
	public function replay_fallback() {
		$result = $this->fallback->replay();
		if ( 0 === $result['remaining'] && '' === $result['error'] ) {
			Dispatcher::clear_failure();
		}
	}

	/**
	 * Declares compatibility with WooCommerce's custom order tables (HPOS): the plugin only uses
	 * WC_Order getters and wc_get_orders().
	 */
	public function declare_compatibility() {
		if ( class_exists( '\Automattic\WooCommerce\Utilities\FeaturesUtil' ) ) {
			\Automattic\WooCommerce\Utilities\FeaturesUtil::declare_compatibility( 'custom_order_tables', WOOSYNC_PLUGIN_FILE, true );
		}
	}

	/**
	 * Loads translations.
	 */
	public function load_textdomain() {
		load_plugin_textdomain( 'woosync', false, dirname( plugin_basename( WOOSYNC_PLUGIN_FILE ) ) . '/languages' );
	}

	/**
	 * Activation: create the fallback table and choose the outbox.
	 */
	public static function activate() {
		Fallback_Queue::install();
		Outbox_Location::configure();
	}

	/**
	 * Deactivation: stop the replay job (the outbox and its events stay).
	 */
	public static function deactivate() {
		wp_clear_scheduled_hook( Fallback_Queue::CRON_HOOK );
	}
}
