<?php
/**
 * WooCommerce's own webhooks (Settings → Advanced → Webhooks) delivered by woosync.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * When the option is on, every active WooCommerce webhook is mirrored to a woosync endpoint
 * (`wc-webhook-<id>`) and its deliveries go through the outbox instead of Action Scheduler.
 *
 * What WooCommerce decides stays WooCommerce's: its hooks call WC_Webhook::process(), which applies
 * should_deliver() (active, valid topic/action/resource, `is_already_processed`, the
 * `woocommerce_webhook_should_deliver` filter) and queues (webhook, arg) for the end of the request
 * through `woocommerce_webhook_process_delivery`. Right after WooCommerce queued it, this class
 * takes a mirrored webhook's entry out of WooCommerce's queue, and at `shutdown` (where WooCommerce
 * would schedule its Action Scheduler job) builds the body with WC_Webhook::build_payload() — the
 * stored state, the `woocommerce_webhook_payload` filter, the webhook's API version — and the HTTP
 * arguments as WC_Webhook::deliver() does (`woocommerce_webhook_http_args`,
 * `woocommerce_webhook_hash_algorithm`), and stores one woosync event per entry: raw body, headers,
 * key `order:<id>` (etc.) for per-resource order. WooCommerce's `deliver()` never runs for it, so
 * its failure count never disables the webhook; woosync retries.
 */
class Wc_Webhooks {

	/** Option: `yes` delivers WooCommerce webhooks through woosync (off by default). */
	const OPTION = 'woosync_wc_webhooks';

	/** Option: per webhook id, what was saved as its endpoint (fingerprint, destination check). */
	const MIRROR_OPTION = 'woosync_wc_webhooks_mirrored';

	/** WooCommerce's Action Scheduler hook for its own webhook deliveries. */
	const AS_HOOK = 'woocommerce_deliver_webhook_async';

	/** How long WordPress's answer for an allowed delivery URL is reused before it is asked again. */
	const RECHECK_SECONDS = 300;

	/** woosync's topic grammar; a WooCommerce topic outside it stays with WooCommerce. */
	const TOPIC_PATTERN = '/^[a-z0-9_]+(\.[a-z0-9_]+)+$/';

	/** Resources whose webhooks carry a REST object and are ordered per object (`<resource>:<id>`). */
	const RESOURCES = array( 'order', 'product', 'coupon', 'customer' );

	/**
	 * Entries taken out of WooCommerce's queue in this request: list of [WC_Webhook, arg].
	 *
	 * @var array
	 */
	private $queue = array();

	/**
	 * What the last switch-on did (`mirrored`, `taken_over`), for the CLI.
	 *
	 * @var array|null
	 */
	public $last_switch = null;

	/**
	 * REST API data read for this request's deliveries (resource, id, version, user => data).
	 *
	 * @var array
	 */
	private $rest_data = array();

	/**
	 * Whether the end-of-request batch is being delivered (the REST data may be shared).
	 *
	 * @var bool
	 */
	private $batch = false;

	/**
	 * Dispatcher (for error reporting).
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
	 * The one place that names a mirrored webhook's endpoint (multisite scoping aligns here).
	 *
	 * @param int $webhook_id WooCommerce webhook id.
	 * @return string
	 */
	public static function endpoint_name( $webhook_id ) {
		// Multisite: WooCommerce webhook ids are per site; `@<blog_id>` as Site_Scope names endpoints.
		return 'wc-webhook-' . (int) $webhook_id . ( is_multisite() ? '@' . get_current_blog_id() : '' );
	}

	/**
	 * The one place that names a delivery's ordering key: `order:<id>`, `product:<id>`,
	 * `coupon:<id>`, `customer:<id>`; `action.*` topics are ordered per webhook.
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @param mixed       $arg     First hook argument.
	 * @return string
	 */
	public static function key( $webhook, $arg ) {
		return ( class_exists( __NAMESPACE__ . '\Site_Scope' ) ? Site_Scope::prefix() : '' ) . self::site_key( $webhook, $arg );
	}

	/**
	 * The id a hook argument names: an object's `get_id()`, else the argument itself.
	 *
	 * @param mixed $arg First hook argument.
	 * @return mixed
	 */
	private static function arg_id( $arg ) {
		return is_object( $arg ) && method_exists( $arg, 'get_id' ) ? $arg->get_id() : $arg;
	}

	/**
	 * The key within one site.
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @param mixed       $arg     First hook argument.
	 * @return string
	 */
	private static function site_key( $webhook, $arg ) {
		$resource = (string) $webhook->get_resource();
		if ( in_array( $resource, self::RESOURCES, true ) ) {
			$id = self::arg_id( $arg );
			if ( is_scalar( $id ) && (string) absint( $id ) === (string) $id ) {
				return $resource . ':' . absint( $id );
			}
		}
		return 'wc-webhook:' . (int) $webhook->get_id();
	}

	/**
	 * Whether new deliveries go through woosync.
	 *
	 * @return bool
	 */
	public static function enabled() {
		return 'yes' === get_option( self::OPTION, 'no' );
	}

	/**
	 * Wires the hooks (called at plugin load, after WooCommerce's file registered its own).
	 */
	public function register() {
		add_action( 'woocommerce_webhook_process_delivery', array( $this, 'intercept' ), 11, 2 );
		// Same priority as WooCommerce's wc_webhook_execute_queue (registered before this), so
		// exactly the entries WooCommerce would schedule are delivered.
		add_action( 'shutdown', array( $this, 'deliver_queue' ), 10 );
		add_action( self::AS_HOOK, array( $this, 'take_over_action' ), 5, 2 );
		add_action( 'woocommerce_new_webhook', array( $this, 'on_saved' ), 10, 1 );
		add_action( 'woocommerce_webhook_updated', array( $this, 'on_saved' ), 10, 1 );
		add_action( 'woocommerce_webhook_deleted', array( $this, 'on_deleted' ), 10, 1 );
		add_action( 'add_option_' . self::OPTION, array( $this, 'on_option_added' ), 10, 2 );
		add_action( 'update_option_' . self::OPTION, array( $this, 'on_option_updated' ), 10, 2 );
		add_action( 'admin_init', array( $this, 'register_setting' ) );
		add_filter( 'webhook_row_actions', array( $this, 'row_actions' ), 10, 2 );
		add_action( 'woocommerce_webhook_options', array( $this, 'render_webhook_panel' ) );

		if ( defined( 'WP_CLI' ) && WP_CLI && class_exists( '\WP_CLI' ) ) {
			require_once __DIR__ . '/class-wc-webhooks-command.php';
			\WP_CLI::add_command( 'woosync wc-webhooks', new Wc_Webhooks_Command( $this ) );
		}
	}

	// ---- switching ----------------------------------------------------------------------------

	/**
	 * Switches delivery through woosync on or off (the option's hooks do the work).
	 *
	 * @param bool $on On.
	 */
	public function set_enabled( $on ) {
		update_option( self::OPTION, $on ? 'yes' : 'no', true );
	}

	/**
	 * Option created.
	 *
	 * @param string $option Name.
	 * @param mixed  $value  Value.
	 */
	public function on_option_added( $option, $value ) {
		if ( 'yes' === $value ) {
			$this->switched_on();
		}
	}

	/**
	 * Option changed.
	 *
	 * @param mixed $old_value Old.
	 * @param mixed $value     New.
	 */
	public function on_option_updated( $old_value, $value ) {
		if ( 'yes' === $value && 'yes' !== $old_value ) {
			$this->switched_on();
		}
	}

	/**
	 * Switching on: every webhook gets its endpoint, and the deliveries WooCommerce already
	 * scheduled in Action Scheduler are taken over (oldest first, so order per resource holds).
	 *
	 * @return array `mirrored` and `taken_over` counts.
	 */
	public function switched_on() {
		$mirrored          = $this->mirror_all();
		$taken             = $this->take_over_scheduled();
		$this->last_switch = array(
			'mirrored'   => $mirrored,
			'taken_over' => $taken,
		);
		return $this->last_switch;
	}

	/**
	 * Saves the endpoint of every WooCommerce webhook.
	 *
	 * @return int How many endpoints were saved or checked.
	 */
	public function mirror_all() {
		if ( ! self::woocommerce_ready() ) {
			return 0;
		}
		$n = 0;
		foreach ( \WC_Data_Store::load( 'webhook' )->get_webhooks_ids() as $id ) {
			$webhook = wc_get_webhook( (int) $id );
			if ( $webhook && $this->mirrorable( $webhook ) && $this->sync_endpoint( $webhook, true ) ) {
				++$n;
			}
		}
		return $n;
	}

	/**
	 * Claims WooCommerce's due `woocommerce_deliver_webhook_async` actions (an Action Scheduler
	 * claim: a queue runner cannot run them meanwhile), stores each mirrored one in woosync and
	 * marks it complete; the others are released untouched.
	 *
	 * @return int Actions taken over.
	 */
	public function take_over_scheduled() {
		if ( ! self::enabled() || ! Extension::loaded() || ! class_exists( '\ActionScheduler' ) ) {
			return 0;
		}
		try {
			return $this->claim_and_take_over();
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
			return 0;
		}
	}

	/**
	 * The claiming loop of take_over_scheduled().
	 *
	 * @return int Actions taken over.
	 */
	private function claim_and_take_over() {
		$taken = 0;
		if ( ! as_has_scheduled_action( self::AS_HOOK ) ) {
			return $taken; // Nothing pending (and no claim on an empty or missing group).
		}
		$store = \ActionScheduler::store();
		for ( $round = 0; $round < 100; $round++ ) {
			$claim = $store->stake_claim( 200, null, array( self::AS_HOOK ) );
			$ids   = $claim->get_actions();
			if ( ! $ids ) {
				$store->release_claim( $claim );
				break;
			}
			$kept = 0;
			foreach ( $ids as $action_id ) {
				$args    = $store->fetch_action( $action_id )->get_args();
				$webhook = isset( $args['webhook_id'] ) ? wc_get_webhook( (int) $args['webhook_id'] ) : null;
				$event   = null;
				if ( $webhook && $this->mirrorable( $webhook ) ) {
					$event = $this->dispatch_one( $webhook, $args['arg'] ?? null );
				}
				if ( $event ) {
					$store->mark_complete( $action_id );
					\ActionScheduler_Logger::instance()->log( $action_id, sprintf( 'Taken over by WooSync: event %s', $event ) );
					++$taken;
				} else {
					$store->unclaim_action( $action_id );
					++$kept;
				}
			}
			$store->release_claim( $claim );
			if ( $kept === count( $ids ) ) {
				break; // Only actions left to WooCommerce: do not claim them again.
			}
		}
		return $taken;
	}

	/**
	 * An Action Scheduler run of `woocommerce_deliver_webhook_async` for a mirrored webhook while
	 * the option is on (scheduled by a request that began before the switch): woosync delivers it
	 * instead of WooCommerce's wc_deliver_webhook_async, this once.
	 *
	 * @param int   $webhook_id Webhook id.
	 * @param mixed $arg        First hook argument.
	 */
	public function take_over_action( $webhook_id, $arg ) {
		if ( ! self::enabled() || ! self::woocommerce_ready() ) {
			return;
		}
		$webhook = wc_get_webhook( (int) $webhook_id );
		if ( ! $webhook || ! $this->mirrorable( $webhook ) || ! $this->dispatch_one( $webhook, $arg ) ) {
			return;
		}
		remove_action( self::AS_HOOK, 'wc_deliver_webhook_async', 10 );
		$restore = static function () use ( &$restore ) {
			add_action( Wc_Webhooks::AS_HOOK, 'wc_deliver_webhook_async', 10, 2 );
			remove_action( Wc_Webhooks::AS_HOOK, $restore, 20 );
		};
		add_action( self::AS_HOOK, $restore, 20, 0 );
	}

	// ---- the request's deliveries ---------------------------------------------------------------

	/**
	 * `woocommerce_webhook_process_delivery`, after WooCommerce's wc_webhook_process_delivery
	 * queued the entry: a mirrored webhook's entry moves from WooCommerce's queue to ours.
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @param mixed       $arg     First hook argument.
	 */
	public function intercept( $webhook, $arg ) {
		global $wc_queued_webhooks;
		if ( ! self::enabled() || ! Extension::loaded() || ! is_array( $wc_queued_webhooks ) || ! $wc_queued_webhooks ) {
			return;
		}
		$last = end( $wc_queued_webhooks );
		if ( ! is_array( $last ) || ( $last['webhook'] ?? null ) !== $webhook || ( $last['arg'] ?? null ) !== $arg ) {
			return; // Someone else queued differently: leave it to WooCommerce.
		}
		if ( ! $this->mirrorable( $webhook ) ) {
			return;
		}
		array_pop( $wc_queued_webhooks );
		$this->queue[] = array( $webhook, $arg );
	}

	/**
	 * `shutdown`: one woosync event per queued entry, built from the stored state now. An entry
	 * woosync cannot take (the outbox fails) goes back to WooCommerce's own path.
	 */
	public function deliver_queue() {
		$queue       = $this->queue;
		$this->queue = array();
		$this->batch = true;
		// Per resource (its ordering key), in the order first queued: read once and dispatched
		// for every webhook that wants it while the resource's lock is held (Resource_Lock).
		$groups = array();
		foreach ( $queue as $entry ) {
			$groups[ self::key( $entry[0], $entry[1] ) ][] = $entry;
		}
		try {
			foreach ( $groups as $key => $entries ) {
				Resource_Lock::run(
					(string) $key,
					function () use ( $entries ) {
						$this->forget_cached( $entries[0][0], $entries[0][1] );
						foreach ( $entries as list( $webhook, $arg ) ) {
							if ( ! $this->dispatch_one( $webhook, $arg ) ) {
								$this->hand_back( $webhook, $arg );
							}
						}
					}
				);
			}
		} finally {
			$this->batch     = false;
			$this->rest_data = array();
		}
	}

	/**
	 * WC_Webhook::build_payload() for one delivery. For the REST API topics, the resource is read
	 * once per request, version and webhook user, however many webhooks want it (WooCommerce
	 * reads it once per webhook: five order webhooks cost five REST requests); each webhook's
	 * payload is then that data through the `woocommerce_webhook_payload` filter, as the webhook's
	 * user, exactly as build_payload() does. Everything else is build_payload() itself.
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @param mixed       $arg     First hook argument.
	 * @return mixed
	 */
	private function build_payload( $webhook, $arg ) {
		self::ensure_rest_namespace( $webhook );
		$resource = (string) $webhook->get_resource();
		$event    = (string) $webhook->get_event();
		$version  = (string) $webhook->get_api_version();
		$id       = ( 'product' === $resource && 'updated' === $event && is_a( $arg, 'WC_Product' ) ) ? $arg->get_id() : $arg;
		if ( 'deleted' === $event || ! in_array( $resource, self::RESOURCES, true )
			|| ! in_array( $version, wc_get_webhook_rest_api_versions(), true ) || ! is_scalar( $id )
			|| ! class_exists( '\Automattic\WooCommerce\Utilities\RestApiUtil' ) ) {
			return $webhook->build_payload( $arg );
		}
		$current = get_current_user_id();
		wp_set_current_user( $webhook->get_user_id() );
		try {
			$key = $resource . '|' . $id . '|' . $version . '|' . $webhook->get_user_id();
			if ( ! isset( $this->rest_data[ $key ] ) ) {
				$this->rest_data[ $key ] = wc_get_container()->get( \Automattic\WooCommerce\Utilities\RestApiUtil::class )
					->get_endpoint_data( '/wc/' . str_replace( 'wp_api_', '', $version ) . "/{$resource}s/{$id}" );
			}
			$data = $this->rest_data[ $key ];
			if ( ! $this->batch ) {
				$this->rest_data = array(); // Outside the end-of-request batch, always the current state.
			}
			/** This filter is documented in woocommerce/includes/class-wc-webhook.php */
			return apply_filters( 'woocommerce_webhook_payload', $data, $resource, $arg, $webhook->get_id() );
		} finally {
			wp_set_current_user( $current );
		}
	}

	/**
	 * WooCommerce's own scheduling for one entry (as wc_webhook_execute_queue would have done).
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @param mixed       $arg     First hook argument.
	 */
	private function hand_back( $webhook, $arg ) {
		global $wc_queued_webhooks;
		$wc_queued_webhooks = array(
			array(
				'webhook' => $webhook,
				'arg'     => $arg,
			),
		);
		wc_webhook_execute_queue();
		$wc_queued_webhooks = array();
	}

	/**
	 * Builds one delivery exactly as WC_Webhook::deliver() would and stores it in the outbox.
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @param mixed       $arg     First hook argument.
	 * @return string|null The event id, or null when woosync could not take it.
	 */
	public function dispatch_one( $webhook, $arg ) {
		try {
			return Resource_Lock::run(
				self::key( $webhook, $arg ),
				function () use ( $webhook, $arg ) {
					if ( ! $this->batch ) {
						$this->forget_cached( $webhook, $arg );
					}
					return $this->dispatch_locked( $webhook, $arg );
				}
			);
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
			return null;
		}
	}

	/**
	 * Drops this request's cached copy of the resource a delivery is about (Resource_Lock).
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @param mixed       $arg     First hook argument.
	 */
	private function forget_cached( $webhook, $arg ) {
		$resource = (string) $webhook->get_resource();
		$id       = self::arg_id( $arg );
		if ( in_array( $resource, self::RESOURCES, true ) && is_scalar( $id ) ) {
			Resource_Lock::forget_cached( $resource, (int) $id );
		}
	}

	/**
	 * dispatch_one() with the resource's lock held.
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @param mixed       $arg     First hook argument.
	 * @return string|null The event id, or null when woosync could not take it.
	 */
	private function dispatch_locked( $webhook, $arg ) {
		try {
			$id    = (int) $webhook->get_id();
			$state = $this->sync_endpoint( $webhook, false );
			if ( ! $state || '' !== $state['refused'] ) {
				return null; // A destination WordPress refuses: WooCommerce's own path refuses it too.
			}
			$payload   = $this->build_payload( $webhook, $arg );
			$http_args = array(
				'method'      => 'POST',
				'timeout'     => MINUTE_IN_SECONDS,
				'redirection' => 0,
				'httpversion' => '1.0',
				'blocking'    => true,
				'user-agent'  => self::user_agent(),
				'body'        => trim( wp_json_encode( $payload ) ),
				'headers'     => array(
					'Content-Type' => 'application/json',
				),
				'cookies'     => array(),
			);
			/** This filter is documented in woocommerce/includes/class-wc-webhook.php */
			$http_args = apply_filters( 'woocommerce_webhook_http_args', $http_args, $arg, $id );
			$body      = (string) ( $http_args['body'] ?? '' );
			/** This filter is documented in woocommerce/includes/class-wc-webhook.php */
			$algorithm = (string) apply_filters( 'woocommerce_webhook_hash_algorithm', 'sha256', $body, $id );
			$timeout   = isset( $http_args['timeout'] ) && is_numeric( $http_args['timeout'] ) && $http_args['timeout'] > 0 ? (float) $http_args['timeout'] : (float) MINUTE_IN_SECONDS;
			if ( $algorithm !== $state['hash_algorithm'] || $timeout !== (float) $state['timeout'] ) {
				// A filter answers differently for this delivery: the endpoint follows it.
				$state = $this->sync_endpoint(
					$webhook,
					false,
					array(
						'hash_algorithm' => $algorithm,
						'timeout'        => $timeout,
					)
				);
				if ( ! $state ) {
					return null;
				}
			}
			$headers = array();
			foreach ( (array) ( $http_args['headers'] ?? array() ) as $name => $value ) {
				$name = (string) $name;
				// woosync sets the X-WC-Webhook-* headers itself; framing headers are the sender's.
				if ( 0 === stripos( $name, 'x-wc-webhook-' ) || in_array( strtolower( $name ), array( 'host', 'content-length', 'transfer-encoding', 'connection' ), true ) ) {
					continue;
				}
				$headers[ $name ] = is_scalar( $value ) ? (string) $value : implode( ', ', array_map( 'strval', (array) $value ) );
			}
			if ( isset( $http_args['user-agent'] ) && is_scalar( $http_args['user-agent'] ) ) {
				$headers['User-Agent'] = (string) $http_args['user-agent'];
			}
			return woosync_dispatch(
				(string) $webhook->get_topic(),
				array(),
				array(
					'key'       => self::key( $webhook, $arg ),
					'endpoints' => array( self::endpoint_name( $id ) ),
					'raw_body'  => $body,
					'headers'   => $headers,
				)
			);
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
			return null;
		}
	}

	/**
	 * build_payload() reads the resource through WooCommerce's REST API (`/wc/v3/orders/<id>`).
	 * Inside a REST request for another namespace — a block checkout is a `wc/store` request —
	 * WooCommerce registers only that namespace's routes, and the payload would be a `rest_no_route`
	 * error (WooCommerce's own queue runner never meets this: it runs outside REST requests). The
	 * webhook's namespace is registered then, as WooCommerce would for a request to it.
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 */
	private static function ensure_rest_namespace( $webhook ) {
		if ( ! in_array( $webhook->get_resource(), self::RESOURCES, true ) || 'deleted' === $webhook->get_event()
			|| empty( $GLOBALS['wp_rest_server'] ) || ! did_action( 'rest_api_init' ) || ! class_exists( '\Automattic\WooCommerce\RestApi\Server' ) ) {
			return; // No payload from the REST API, or no server yet (rest_do_request() will load every namespace).
		}
		$namespace = 'wc/' . str_replace( 'wp_api_', '', (string) $webhook->get_api_version() );
		// The collection route (`/wc/v3/orders`): other code registers single wc/v3 routes too.
		if ( isset( rest_get_server()->get_routes( $namespace )[ '/' . $namespace . '/' . $webhook->get_resource() . 's' ] ) ) {
			return;
		}
		$force = static function ( $load, $ns ) use ( $namespace ) {
			return rtrim( (string) $ns, '/' ) === $namespace ? true : $load; // WooCommerce passes 'wc/v3/'.
		};
		add_filter( 'wc_rest_should_load_namespace', $force, 10, 2 );
		try {
			\Automattic\WooCommerce\RestApi\Server::instance()->register_rest_routes();
		} finally {
			remove_filter( 'wc_rest_should_load_namespace', $force, 10 );
		}
	}

	/**
	 * Whether woosync can deliver this webhook (else WooCommerce keeps it).
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @return bool
	 */
	public function mirrorable( $webhook ) {
		$ok = $webhook instanceof \WC_Webhook && $webhook->get_id() > 0
			&& 1 === preg_match( self::TOPIC_PATTERN, (string) $webhook->get_topic() )
			&& '' !== (string) $webhook->get_delivery_url();
		/**
		 * Whether woosync delivers this WooCommerce webhook while the option is on (false keeps it
		 * on WooCommerce's own path).
		 *
		 * @param bool        $mirrored Default: true when woosync can deliver it.
		 * @param \WC_Webhook $webhook  The webhook.
		 */
		return $ok && (bool) apply_filters( 'woosync_wc_webhook_mirrored', true, $webhook );
	}

	// ---- endpoints ------------------------------------------------------------------------------

	/**
	 * Webhook saved (also by WooCommerce's failure counting): its endpoint follows, without a
	 * restart. Only while the option is on, or when the webhook already has an endpoint.
	 *
	 * @param int $webhook_id Webhook id.
	 */
	public function on_saved( $webhook_id ) {
		$mirrored = get_option( self::MIRROR_OPTION, array() );
		if ( ! self::enabled() && ! isset( $mirrored[ (int) $webhook_id ] ) ) {
			return;
		}
		$webhook = wc_get_webhook( (int) $webhook_id );
		if ( $webhook && ( $this->mirrorable( $webhook ) || isset( $mirrored[ (int) $webhook_id ] ) ) ) {
			$this->sync_endpoint( $webhook, true );
		}
	}

	/**
	 * Webhook deleted: its endpoint goes too (deliveries still waiting become dead, as the
	 * webhook no longer exists).
	 *
	 * @param int $webhook_id Webhook id.
	 */
	public function on_deleted( $webhook_id ) {
		$mirrored = get_option( self::MIRROR_OPTION, array() );
		if ( ! isset( $mirrored[ (int) $webhook_id ] ) ) {
			return;
		}
		try {
			if ( Extension::has( 'woosync_endpoint_delete' ) ) {
				woosync_endpoint_delete( self::endpoint_name( $webhook_id ) );
			}
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
		}
		unset( $mirrored[ (int) $webhook_id ] );
		update_option( self::MIRROR_OPTION, $mirrored, true );
	}

	/**
	 * Saves the webhook's endpoint when what it should be differs from what was saved (cheap
	 * otherwise: a fingerprint compared with an autoloaded option).
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @param bool        $recheck Check the destination again (on save; else the cached check
	 *                             of the same URL is used).
	 * @param array       $seen    `hash_algorithm`, `timeout` as the filters answered for a delivery.
	 * @return array|null The saved state (`refused` is '' or why WordPress refuses the URL).
	 */
	public function sync_endpoint( $webhook, $recheck, array $seen = array() ) {
		if ( ! Extension::has( 'woosync_endpoint_save' ) ) {
			return null;
		}
		$id       = (int) $webhook->get_id();
		$mirrored = get_option( self::MIRROR_OPTION, array() );
		$state    = isset( $mirrored[ $id ] ) && is_array( $mirrored[ $id ] ) ? $mirrored[ $id ] : array();
		$url      = (string) $webhook->get_delivery_url();
		// WordPress's answer for the URL is kept for a few minutes (it may resolve the host); a
		// refused one is asked again every time (the site may have allowed it since).
		$fresh = ( $state['url'] ?? null ) === $url && isset( $state['allow'], $state['checked_at'] )
			&& '' === ( $state['refused'] ?? '' ) && time() - (int) $state['checked_at'] < self::RECHECK_SECONDS;
		$checked_at = (int) ( $state['checked_at'] ?? 0 );
		if ( $recheck || ! $fresh ) {
			list( $refused, $allow ) = self::destination( $url );
			$checked_at              = time();
		} else {
			$refused = (string) $state['refused'];
			$allow   = (array) $state['allow'];
		}
		$algorithm = (string) ( $seen['hash_algorithm'] ?? ( $state['hash_algorithm'] ?? apply_filters( 'woocommerce_webhook_hash_algorithm', 'sha256', '', $id ) ) );
		$timeout   = (float) ( $seen['timeout'] ?? ( $state['timeout'] ?? MINUTE_IN_SECONDS ) );
		$config    = array(
			'url'            => $url,
			'secret'         => wp_specialchars_decode( (string) $webhook->get_secret(), ENT_QUOTES ),
			'topics'         => array(), // Only events dispatched to it by name reach it.
			'enabled'        => 'active' === $webhook->get_status() && '' === $refused,
			'timeout'        => $timeout,
			'signature'      => 'woocommerce',
			'hash_algorithm' => $algorithm,
			'success_codes'  => '200-302',
			'user_agent'     => self::user_agent(),
			'source'         => home_url( '/' ),
			'wc_webhook_id'  => $id,
			'allow_networks' => $allow,
		);
		$delays = (string) ini_get( 'woosync.retry_delays' );
		if ( '' !== trim( $delays ) ) {
			$config['retry_delays'] = $delays;
		}
		/**
		 * Filters the woosync endpoint that mirrors a WooCommerce webhook (for example to give it
		 * its own `retry_delays` or `rate_limit`).
		 *
		 * @param array       $config  woosync_endpoint_save() settings.
		 * @param \WC_Webhook $webhook The webhook.
		 */
		$config = apply_filters( 'woosync_wc_webhook_endpoint', $config, $webhook );
		$fp     = md5( Outbox_Location::current() . '|' . wp_json_encode( $config ) );
		if ( ( $state['fp'] ?? '' ) === $fp ) {
			if ( $checked_at !== (int) ( $state['checked_at'] ?? 0 ) && '' === $refused ) {
				$state['checked_at'] = $checked_at;
				$this->store_state( $id, $state );
			}
			return $state;
		}
		try {
			woosync_endpoint_save( self::endpoint_name( $id ), $config );
		} catch ( \Throwable $e ) {
			$this->dispatcher->report( $e );
			return null;
		}
		$state = array(
			'fp'             => $fp,
			'url'            => $url,
			'refused'        => $refused,
			'allow'          => $allow,
			'checked_at'     => $checked_at,
			'hash_algorithm' => $algorithm,
			'timeout'        => $timeout,
		);
		$this->store_state( $id, $state );
		return $state;
	}

	/**
	 * Records what was saved for a webhook.
	 *
	 * @param int   $id    Webhook id.
	 * @param array $state State.
	 */
	private function store_state( $id, array $state ) {
		$mirrored        = get_option( self::MIRROR_OPTION, array() );
		$mirrored[ $id ] = $state;
		update_option( self::MIRROR_OPTION, $mirrored, true );
	}

	/**
	 * WordPress's destination policy for a URL, as wp_safe_remote_request() applies it:
	 * ['', networks] when allowed — the networks being the host's internal addresses that the
	 * site allowed (through `http_request_host_is_external`, or being the site's own host),
	 * which become the endpoint's `allow_networks` for that host only — or [reason, []].
	 *
	 * @param string $url Delivery URL.
	 * @return array
	 */
	public static function destination( $url ) {
		if ( false === wp_http_validate_url( $url ) ) {
			return array( 'WordPress refuses this URL (wp_http_validate_url: scheme, credentials, internal address not allowed by http_request_host_is_external, or port not in http_allowed_safe_ports)', array() );
		}
		if ( ( new \WP_Http() )->block_request( $url ) ) {
			return array( 'WordPress blocks this host (WP_HTTP_BLOCK_EXTERNAL without it in WP_ACCESSIBLE_HOSTS)', array() );
		}
		$host = trim( (string) wp_parse_url( $url, PHP_URL_HOST ), '[].' );
		if ( filter_var( $host, FILTER_VALIDATE_IP ) ) {
			$ips = array( $host );
		} else {
			$ips = (array) gethostbynamel( $host );
		}
		$allow = array();
		foreach ( array_filter( $ips ) as $ip ) {
			if ( ! filter_var( $ip, FILTER_VALIDATE_IP, FILTER_FLAG_NO_PRIV_RANGE | FILTER_FLAG_NO_RES_RANGE ) ) {
				$allow[] = $ip . ( false !== strpos( $ip, ':' ) ? '/128' : '/32' );
			}
		}
		return array( '', $allow );
	}

	/**
	 * WooCommerce's User-Agent.
	 *
	 * @return string
	 */
	public static function user_agent() {
		return sprintf( 'WooCommerce/%s Hookshot (WordPress/%s)', defined( 'WC_VERSION' ) ? WC_VERSION : '', $GLOBALS['wp_version'] ?? '' );
	}

	/**
	 * Whether WooCommerce's webhook code is loaded.
	 *
	 * @return bool
	 */
	public static function woocommerce_ready() {
		return class_exists( '\WC_Webhook' ) && class_exists( '\WC_Data_Store' ) && function_exists( 'wc_get_webhook' );
	}

	// ---- what the owner sees --------------------------------------------------------------------

	/**
	 * Per webhook: id, name, topic, status, endpoint, delivered_by, health, pending, dead, refused.
	 *
	 * @return array
	 */
	public function report() {
		static $cache = null;
		if ( null !== $cache && did_action( 'admin_head' ) ) {
			return $cache; // One look at the outbox per screen (the list asks once per row).
		}
		$rows = array();
		if ( ! self::woocommerce_ready() ) {
			return $rows;
		}
		$endpoints = array();
		if ( Extension::has( 'woosync_endpoints' ) ) {
			try {
				foreach ( (array) woosync_endpoints() as $e ) {
					$endpoints[ $e['name'] ?? '' ] = $e;
				}
			} catch ( \Throwable $e ) {
				$endpoints = array();
			}
		}
		$mirrored = get_option( self::MIRROR_OPTION, array() );
		foreach ( \WC_Data_Store::load( 'webhook' )->get_webhooks_ids() as $id ) {
			$webhook = wc_get_webhook( (int) $id );
			if ( ! $webhook ) {
				continue;
			}
			$name    = self::endpoint_name( $id );
			$e       = $endpoints[ $name ] ?? null;
			$refused = (string) ( $mirrored[ (int) $id ]['refused'] ?? '' );
			$by      = ( self::enabled() && $this->mirrorable( $webhook ) && '' === $refused && $e ) ? 'woosync' : 'woocommerce';
			$rows[]  = array(
				'id'           => (int) $id,
				'name'         => $webhook->get_name(),
				'topic'        => $webhook->get_topic(),
				'status'       => $webhook->get_status(),
				'delivered_by' => $by,
				'endpoint'     => $e ? $name : '',
				'health'       => $e ? (string) ( $e['health'] ?? '' ) : '',
				'pending'      => $e ? (int) ( $e['pending'] ?? 0 ) : 0,
				'dead'         => $e ? (int) ( $e['dead'] ?? 0 ) : 0,
				'refused'      => '' !== $refused ? $refused : (string) ( $e['refused_reason'] ?? '' ),
			);
		}
		$cache = $rows;
		return $rows;
	}

	/**
	 * Settings → WooSync: the switch.
	 */
	public function register_setting() {
		register_setting(
			Settings::GROUP,
			self::OPTION,
			array(
				'type'              => 'string',
				'default'           => 'no',
				'sanitize_callback' => static function ( $value ) {
					return ( 'yes' === $value || '1' === (string) $value ) ? 'yes' : 'no';
				},
			)
		);
		add_settings_section( 'woosync_wc_webhooks', __( 'WooCommerce webhooks', 'woosync' ), '__return_false', Settings::PAGE );
		add_settings_field( 'woosync_wc_webhooks', __( 'Deliver WooCommerce webhooks through WooSync', 'woosync' ), array( $this, 'render_setting' ), Settings::PAGE, 'woosync_wc_webhooks', array( 'label_for' => 'woosync_wc_webhooks' ) );
	}

	/**
	 * The checkbox.
	 */
	public function render_setting() {
		printf(
			'<label><input type="checkbox" id="woosync_wc_webhooks" name="%1$s" value="yes" %2$s /> %3$s</label><p class="description">%4$s</p>',
			esc_attr( self::OPTION ),
			checked( self::enabled(), true, false ),
			esc_html__( 'Deliver WooCommerce webhooks through WooSync', 'woosync' ),
			esc_html__( 'The webhooks under WooCommerce → Settings → Advanced → Webhooks are sent at once by woosync, in order per resource and retried, instead of through Action Scheduler; their receivers see the same bodies, headers and signatures. Off: WooCommerce delivers them again (deliveries already in woosync are still delivered).', 'woosync' )
		);
	}

	/**
	 * The webhooks list: who delivers each webhook and its health.
	 *
	 * @param array       $actions Row actions.
	 * @param \WC_Webhook $webhook Webhook.
	 * @return array
	 */
	public function row_actions( $actions, $webhook ) {
		$line = $this->health_line( $webhook );
		if ( '' !== $line ) {
			$actions['woosync'] = esc_html( $line );
		}
		return $actions;
	}

	/**
	 * The webhook editor: the same line, under the webhook's data.
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 */
	public function render_webhook_panel( $webhook ) {
		$line = $this->health_line( $webhook );
		if ( '' !== $line ) {
			printf( '<p class="woosync-wc-webhook"><strong>%s</strong> %s</p>', esc_html__( 'WooSync:', 'woosync' ), esc_html( $line ) );
		}
	}

	/**
	 * "Delivered by WooSync — healthy, 0 waiting, 0 dead" (or why not).
	 *
	 * @param \WC_Webhook $webhook Webhook.
	 * @return string
	 */
	private function health_line( $webhook ) {
		if ( ! $webhook instanceof \WC_Webhook || ! $webhook->get_id() ) {
			return '';
		}
		foreach ( $this->report() as $row ) {
			if ( (int) $row['id'] !== (int) $webhook->get_id() ) {
				continue;
			}
			if ( '' !== $row['refused'] && 'woocommerce' === $row['delivered_by'] && self::enabled() ) {
				/* translators: %s: reason */
				return sprintf( __( 'Not delivered by WooSync: %s', 'woosync' ), $row['refused'] );
			}
			if ( 'woosync' !== $row['delivered_by'] ) {
				return '' === $row['endpoint'] ? '' : sprintf(
					/* translators: 1: waiting deliveries */
					__( 'Delivered by WooCommerce; WooSync still has %1$d waiting', 'woosync' ),
					$row['pending']
				);
			}
			return sprintf(
				/* translators: 1: health, 2: waiting, 3: dead */
				__( 'Delivered by WooSync — %1$s, %2$d waiting, %3$d dead', 'woosync' ),
				$row['health'],
				$row['pending'],
				$row['dead']
			);
		}
		return '';
	}
}
