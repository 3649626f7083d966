<?php
/**
 * WooCommerce (or Tools) → WooSync log: every event, what was sent, what the CRM answered, and replay.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * The admin delivery log.
 *
 * - Header: endpoint health, counts by state, oldest pending age and a call to action.
 * - Table (Log_Table, a WP_List_Table): one row per delivery, newest first, server-side pagination.
 * - Detail (modal through admin-ajax, or a full page without JavaScript): the body exactly as sent,
 *   pretty-printed and copyable, the headers sent (no secret), and every attempt.
 * - Actions (admin-post, nonce + capability): retry one event, retry all dead, send a test event.
 *
 * Only the woosync_* functions of the extension and WordPress core are used, so the page works
 * whatever the rest of the plugin does.
 */
class Log_Page {

	const SLUG             = 'woosync-log';
	const ACTION_RETRY     = 'woosync_log_retry';
	const ACTION_RETRY_ALL = 'woosync_log_retry_dead';
	const ACTION_TEST      = 'woosync_log_test';
	const AJAX_EVENT       = 'woosync_log_event';
	const NOTICE           = 'woosync_log_notice_';
	const PER_PAGE_OPTION  = 'woosync_log_per_page';
	const TEST_TOPIC       = 'woosync.test';

	/**
	 * Page hook suffix returned by add_submenu_page().
	 *
	 * @var string
	 */
	private static $hook = '';

	/**
	 * Whether register() ran.
	 *
	 * @var bool
	 */
	private static $registered = false;

	/**
	 * Wires every hook (idempotent).
	 */
	public static function register(): void {
		if ( self::$registered ) {
			return;
		}
		self::$registered = true;
		// After WooCommerce builds its menu (priority 9) so the page can go under it.
		add_action( 'admin_menu', array( __CLASS__, 'add_menu' ), 60 );
		add_action( 'admin_enqueue_scripts', array( __CLASS__, 'enqueue' ) );
		add_action( 'admin_post_' . self::ACTION_RETRY, array( __CLASS__, 'handle_retry' ) );
		add_action( 'admin_post_' . self::ACTION_RETRY_ALL, array( __CLASS__, 'handle_retry_dead' ) );
		add_action( 'admin_post_' . self::ACTION_TEST, array( __CLASS__, 'handle_test' ) );
		add_action( 'wp_ajax_' . self::AJAX_EVENT, array( __CLASS__, 'ajax_event' ) );
		add_filter( 'set_screen_option_' . self::PER_PAGE_OPTION, array( __CLASS__, 'save_per_page' ), 10, 3 );
	}

	// ---- access ----------------------------------------------------------------------------------

	/**
	 * Capability needed: `manage_woocommerce` where WooCommerce grants it to administrators, else
	 * `manage_options`. Filterable with `woosync_capability` (shared with the settings page).
	 *
	 * @return string
	 */
	public static function capability() {
		$admin = get_role( 'administrator' );
		$cap   = ( $admin && $admin->has_cap( 'manage_woocommerce' ) ) ? 'manage_woocommerce' : 'manage_options';
		return (string) apply_filters( 'woosync_capability', $cap );
	}

	/**
	 * Stops the request with a 403 unless the user may use the log.
	 */
	private static function require_capability() {
		if ( ! current_user_can( self::capability() ) ) {
			wp_die(
				esc_html__( 'Sorry, you are not allowed to access the WooSync log.', 'woosync' ),
				esc_html__( 'Forbidden', 'woosync' ),
				array( 'response' => 403 )
			);
		}
	}

	/**
	 * Whether WooCommerce's top-level menu exists.
	 *
	 * @return bool
	 */
	private static function under_woocommerce() {
		global $admin_page_hooks;
		return is_array( $admin_page_hooks ) && isset( $admin_page_hooks['woocommerce'] );
	}

	/**
	 * Adds the page under WooCommerce, or under Tools when WooCommerce has no menu.
	 */
	public static function add_menu() {
		$title  = __( 'WooSync log', 'woosync' );
		$parent = self::under_woocommerce() ? 'woocommerce' : 'tools.php';
		$hook   = add_submenu_page( $parent, $title, $title, self::capability(), self::SLUG, array( __CLASS__, 'render_page' ) );
		if ( $hook ) {
			self::$hook = $hook;
			add_action( 'load-' . $hook, array( __CLASS__, 'on_load' ) );
		}
	}

	/**
	 * Page URL (with optional query args).
	 *
	 * @param array $args Query args.
	 * @return string
	 */
	public static function url( array $args = array() ) {
		// menu_page_url() lives in wp-admin/includes/plugin.php: not loaded on the front end or in cron.
		$base = function_exists( 'menu_page_url' ) ? menu_page_url( self::SLUG, false ) : '';
		if ( '' === $base ) {
			$base = admin_url( ( class_exists( 'WooCommerce' ) ? 'admin.php' : 'tools.php' ) . '?page=' . self::SLUG );
		}
		return add_query_arg( $args, $base );
	}

	/**
	 * Screen options and help, before the page is printed.
	 */
	public static function on_load() {
		self::require_capability();
		// The filter form is a GET form carrying WP_List_Table's nonce fields: drop them from the URL.
		// phpcs:ignore WordPress.Security.NonceVerification.Recommended -- read-only view.
		if ( ! empty( $_GET['_wp_http_referer'] ) && isset( $_SERVER['REQUEST_URI'] ) ) {
			wp_safe_redirect( remove_query_arg( array( '_wp_http_referer', '_wpnonce', 'filter_action', 'woosync_done' ), wp_unslash( $_SERVER['REQUEST_URI'] ) ) ); // phpcs:ignore WordPress.Security.ValidatedSanitizedInput.InputNotSanitized
			exit;
		}
		add_screen_option(
			'per_page',
			array(
				'label'   => __( 'Deliveries per page', 'woosync' ),
				'default' => 20,
				'option'  => self::PER_PAGE_OPTION,
			)
		);
		get_current_screen()->add_help_tab(
			array(
				'id'      => 'woosync-log-overview',
				'title'   => __( 'Overview', 'woosync' ),
				'content' => '<p>' . esc_html__( 'Every change woosync sends to your CRM is stored in the outbox first, then delivered with retries. Each row is one delivery of one event to one endpoint. Open an event to see the exact body that was sent, the headers and every attempt with the CRM\'s answer. Dead deliveries gave up after all retries: fix the cause (see the last error), then retry them.', 'woosync' ) . '</p>',
			)
		);
	}

	/**
	 * Keeps the per-page screen option within bounds.
	 *
	 * @param mixed  $keep   Value to keep (false: do not save).
	 * @param string $option Option name.
	 * @param mixed  $value  Submitted value.
	 * @return mixed
	 */
	public static function save_per_page( $keep, $option, $value ) {
		if ( self::PER_PAGE_OPTION !== $option ) {
			return $keep;
		}
		return max( 1, min( 200, absint( $value ) ) );
	}

	/**
	 * Loads log.js / log.css on this page only.
	 *
	 * @param string $hook_suffix Current admin page.
	 */
	public static function enqueue( $hook_suffix ) {
		if ( '' === self::$hook || $hook_suffix !== self::$hook ) {
			return;
		}
		$plugin_file = defined( 'WOOSYNC_PLUGIN_FILE' ) ? WOOSYNC_PLUGIN_FILE : dirname( __DIR__ ) . '/woosync.php';
		$dir         = dirname( __DIR__ ) . '/assets/';
		$ver_css     = file_exists( $dir . 'log.css' ) ? (string) filemtime( $dir . 'log.css' ) : '1';
		$ver_js      = file_exists( $dir . 'log.js' ) ? (string) filemtime( $dir . 'log.js' ) : '1';
		wp_enqueue_style( 'woosync-log', plugins_url( 'assets/log.css', $plugin_file ), array(), $ver_css );
		wp_enqueue_script( 'woosync-log', plugins_url( 'assets/log.js', $plugin_file ), array(), $ver_js, true );
		wp_localize_script(
			'woosync-log',
			'woosyncLog',
			array(
				'ajaxUrl' => admin_url( 'admin-ajax.php' ),
				'action'  => self::AJAX_EVENT,
				'nonce'   => wp_create_nonce( self::AJAX_EVENT ),
				'i18n'    => array(
					'loading' => __( 'Loading…', 'woosync' ),
					'error'   => __( 'Could not load the event.', 'woosync' ),
					'copied'  => __( 'Copied', 'woosync' ),
					'copy'    => __( 'Copy', 'woosync' ),
					'close'   => __( 'Close', 'woosync' ),
					'title'   => __( 'Event details', 'woosync' ),
				),
			)
		);
	}

	// ---- extension access ------------------------------------------------------------------------

	/**
	 * Whether the extension functions this page needs exist.
	 *
	 * @return bool
	 */
	public static function available() {
		foreach ( array( 'woosync_status', 'woosync_events', 'woosync_event', 'woosync_retry', 'woosync_retry_dead', 'woosync_dispatch' ) as $fn ) {
			if ( ! function_exists( $fn ) ) {
				return false;
			}
		}
		return true;
	}

	/**
	 * Endpoint rows of a status, by name (on multisite, not other sites' endpoints).
	 *
	 * @param array $status woosync_status().
	 * @return array<string,array>
	 */
	public static function endpoints_by_name( array $status ) {
		$out = array();
		foreach ( (array) ( $status['endpoints'] ?? array() ) as $endpoint ) {
			if ( is_array( $endpoint ) && isset( $endpoint['name'] ) && Site_Scope::owns_endpoint( (string) $endpoint['name'] ) ) {
				$out[ (string) $endpoint['name'] ] = $endpoint;
			}
		}
		return $out;
	}

	/**
	 * Whether $id looks like an event id.
	 *
	 * @param string $id Candidate.
	 * @return bool
	 */
	public static function is_event_id( $id ) {
		return is_string( $id ) && 1 === preg_match( '/^evt_[0-9A-Za-z]{10,40}$/', $id );
	}

	// ---- formatting ------------------------------------------------------------------------------

	/**
	 * Unix time of an ISO-8601 timestamp from the extension (or null).
	 *
	 * @param mixed $iso Timestamp.
	 * @return int|null
	 */
	public static function ts( $iso ) {
		if ( null === $iso || '' === $iso ) {
			return null;
		}
		if ( is_numeric( $iso ) ) {
			return (int) $iso;
		}
		$t = strtotime( (string) $iso );
		return false === $t ? null : $t;
	}

	/**
	 * Site-local date and time.
	 *
	 * @param mixed $iso Timestamp.
	 * @return string
	 */
	public static function datetime( $iso ) {
		$t = self::ts( $iso );
		if ( null === $t ) {
			return '—';
		}
		/* translators: date and time format with seconds for the delivery log, see https://www.php.net/manual/datetime.format.php */
		return wp_date( __( 'Y-m-d H:i:s', 'woosync' ), $t );
	}

	/**
	 * "5 mins ago" / "in 3 secs".
	 *
	 * @param mixed $iso Timestamp.
	 * @return string
	 */
	public static function relative( $iso ) {
		$t = self::ts( $iso );
		if ( null === $t ) {
			return '';
		}
		$now = time();
		/* translators: %s: human-readable time difference */
		return $t <= $now ? sprintf( __( '%s ago', 'woosync' ), human_time_diff( $t, $now ) ) : sprintf( __( 'in %s', 'woosync' ), human_time_diff( $now, $t ) );
	}

	/**
	 * A <time> element: absolute date, relative in brackets.
	 *
	 * @param mixed $iso Timestamp.
	 * @return string HTML.
	 */
	public static function time_html( $iso ) {
		$t = self::ts( $iso );
		if ( null === $t ) {
			return '—';
		}
		return sprintf(
			'<time datetime="%1$s" title="%2$s">%3$s</time>',
			esc_attr( gmdate( 'c', $t ) ),
			esc_attr( self::relative( $iso ) ),
			esc_html( self::datetime( $iso ) )
		);
	}

	/**
	 * Seconds as a short duration ("2 hours").
	 *
	 * @param float|int|null $seconds Seconds.
	 * @return string
	 */
	public static function age( $seconds ) {
		if ( null === $seconds ) {
			return '—';
		}
		$seconds = (int) round( (float) $seconds );
		if ( $seconds < 60 ) {
			/* translators: %d: seconds */
			return sprintf( _n( '%d second', '%d seconds', $seconds, 'woosync' ), $seconds );
		}
		return human_time_diff( time() - $seconds, time() );
	}

	/**
	 * Milliseconds, rounded.
	 *
	 * @param mixed $ms Duration.
	 * @return string
	 */
	public static function ms( $ms ) {
		if ( null === $ms || '' === $ms ) {
			return '—';
		}
		$ms = (float) $ms;
		/* translators: %s: milliseconds */
		return $ms < 10 ? sprintf( __( '%s ms', 'woosync' ), number_format_i18n( $ms, 1 ) ) : sprintf( __( '%s ms', 'woosync' ), number_format_i18n( $ms ) );
	}

	/**
	 * Re-indents JSON text without decoding it: every token (numbers, escapes) stays byte for
	 * byte as sent; only whitespace between tokens is added. Invalid JSON is returned unchanged.
	 *
	 * @param string $json JSON text.
	 * @return string
	 */
	public static function pretty_json( $json ) {
		$json = (string) $json;
		if ( '' === $json || null === json_decode( $json ) && JSON_ERROR_NONE !== json_last_error() ) {
			return $json;
		}
		$out    = '';
		$indent = 0;
		$in_str = false;
		$escape = false;
		$len    = strlen( $json );
		for ( $i = 0; $i < $len; $i++ ) {
			$c = $json[ $i ];
			if ( $in_str ) {
				$out .= $c;
				if ( $escape ) {
					$escape = false;
				} elseif ( '\\' === $c ) {
					$escape = true;
				} elseif ( '"' === $c ) {
					$in_str = false;
				}
				continue;
			}
			switch ( $c ) {
				case '"':
					$in_str = true;
					$out   .= $c;
					break;
				case '{':
				case '[':
					$j = $i + 1;
					while ( $j < $len && false !== strpos( " \t\r\n", $json[ $j ] ) ) {
						++$j;
					}
					if ( $j < $len && ( '}' === $json[ $j ] || ']' === $json[ $j ] ) ) {
						$out .= $c . $json[ $j ];
						$i    = $j;
						break;
					}
					++$indent;
					$out .= $c . "\n" . str_repeat( '  ', $indent );
					break;
				case '}':
				case ']':
					--$indent;
					$out .= "\n" . str_repeat( '  ', max( 0, $indent ) ) . $c;
					break;
				case ',':
					$out .= ",\n" . str_repeat( '  ', $indent );
					break;
				case ':':
					$out .= ': ';
					break;
				case ' ':
				case "\t":
				case "\r":
				case "\n":
					break;
				default:
					$out .= $c;
			}
		}
		return $out;
	}

	/**
	 * Label and CSS modifier of a delivery state.
	 *
	 * @param array $row Delivery (state, attempts, next_attempt_at).
	 * @return array{0:string,1:string,2:string} Label, CSS modifier, extra line (plain text).
	 */
	public static function state_label( array $row ) {
		$state    = (string) ( $row['state'] ?? '' );
		$attempts = (int) ( $row['attempts'] ?? 0 );
		$next     = $row['next_attempt_at'] ?? null;
		switch ( $state ) {
			case 'pending':
			case 'queued':
				if ( $attempts > 0 ) {
					$extra = $next ? sprintf(
						/* translators: 1: date and time, 2: relative time */
						__( 'next attempt %1$s (%2$s)', 'woosync' ),
						self::datetime( $next ),
						self::relative( $next )
					) : '';
					return array( __( 'Retrying', 'woosync' ), 'retrying', $extra );
				}
				return array( __( 'Pending', 'woosync' ), 'pending', '' );
			case 'in_flight':
				return array( __( 'Sending', 'woosync' ), 'pending', '' );
			case 'delivered':
				return array( __( 'Delivered', 'woosync' ), 'delivered', '' );
			case 'dead':
				return array( __( 'Dead', 'woosync' ), 'dead', '' );
			case 'superseded':
				return array( __( 'Superseded', 'woosync' ), 'superseded', __( 'a newer event of the same key replaced it', 'woosync' ) );
			case 'unrouted':
				return array( __( 'Unrouted', 'woosync' ), 'superseded', __( 'no endpoint matched when it was stored', 'woosync' ) );
			default:
				return array( ucfirst( str_replace( '_', ' ', $state ) ), 'pending', '' );
		}
	}

	/**
	 * State badge HTML.
	 *
	 * @param array $row Delivery.
	 * @return string
	 */
	public static function state_html( array $row ) {
		list( $label, $mod, $extra ) = self::state_label( $row );
		$html = sprintf( '<span class="woosync-state woosync-state--%1$s">%2$s</span>', esc_attr( $mod ), esc_html( $label ) );
		if ( '' !== $extra ) {
			$html .= '<br><span class="description">' . esc_html( $extra ) . '</span>';
		}
		return $html;
	}

	/**
	 * "HTTP 500" / the error, for a delivery or attempt.
	 *
	 * @param mixed $status HTTP status.
	 * @param mixed $error  Error text.
	 * @return string Plain text.
	 */
	public static function result_text( $status, $error ) {
		$parts = array();
		if ( null !== $status && '' !== $status ) {
			/* translators: %d: HTTP status code */
			$parts[] = sprintf( __( 'HTTP %d', 'woosync' ), (int) $status );
		}
		// The extension's error for an HTTP failure is "HTTP 500": do not say it twice.
		if ( null !== $error && '' !== $error && ! in_array( (string) $error, $parts, true ) ) {
			$parts[] = (string) $error;
		}
		return implode( ' — ', $parts );
	}

	/**
	 * Health label, CSS modifier and explanation of one endpoint.
	 *
	 * @param array $endpoint Endpoint row of woosync_status().
	 * @return array{0:string,1:string,2:string}
	 */
	public static function health( array $endpoint ) {
		$health = (string) ( $endpoint['health'] ?? 'unconfigured' );
		switch ( $health ) {
			case 'healthy':
				$since = $endpoint['last_success_at'] ?? null;
				return array(
					__( 'Healthy', 'woosync' ),
					'delivered',
					/* translators: %s: relative time */
					$since ? sprintf( __( 'last delivery %s', 'woosync' ), self::relative( $since ) ) : __( 'no delivery yet', 'woosync' ),
				);
			case 'failing':
				$fails = (int) ( $endpoint['consecutive_failures'] ?? 0 );
				$since = $endpoint['last_success_at'] ?? null;
				$text  = $since
					/* translators: 1: relative time of the last success, 2: number of failed attempts */
					? sprintf( _n( 'failing since the last success %1$s (%2$d failed attempt)', 'failing since the last success %1$s (%2$d failed attempts in a row)', $fails, 'woosync' ), self::relative( $since ), $fails )
					/* translators: %d: number of failed attempts */
					: sprintf( _n( 'never delivered (%d failed attempt)', 'never delivered (%d failed attempts in a row)', $fails, 'woosync' ), $fails );
				return array( __( 'Failing', 'woosync' ), 'retrying', $text );
			case 'paused':
				$until = $endpoint['breaker_open_until'] ?? null;
				return array(
					__( 'Paused', 'woosync' ),
					'retrying',
					/* translators: %s: date and time */
					$until ? sprintf( __( 'too many failures: sending resumes at %s', 'woosync' ), self::datetime( $until ) ) : __( 'too many failures: sending resumes shortly', 'woosync' ),
				);
			case 'disabled':
				$reason = (string) ( $endpoint['disabled_reason'] ?? '' );
				$at     = $endpoint['disabled_at'] ?? null;
				$text   = '' !== $reason ? $reason : __( 'disabled', 'woosync' );
				if ( $at ) {
					/* translators: 1: reason, 2: date and time */
					$text = sprintf( __( '%1$s (since %2$s)', 'woosync' ), $text, self::datetime( $at ) );
				}
				return array( __( 'Disabled', 'woosync' ), 'dead', $text );
			case 'off':
				return array( __( 'Off', 'woosync' ), 'superseded', __( 'switched off in the settings', 'woosync' ) );
			default:
				return array( __( 'Not configured', 'woosync' ), 'superseded', __( 'no CRM URL set', 'woosync' ) );
		}
	}

	// ---- notices ---------------------------------------------------------------------------------

	/**
	 * Queues a notice for the current user's next view of the page.
	 *
	 * @param string $type    success|error|warning|info.
	 * @param string $message Plain text.
	 */
	private static function add_notice( $type, $message ) {
		$key     = self::NOTICE . get_current_user_id();
		$notices = get_transient( $key );
		$notices = is_array( $notices ) ? $notices : array();
		$notices[] = array( $type, $message );
		set_transient( $key, $notices, 10 * MINUTE_IN_SECONDS );
	}

	/**
	 * Prints and clears the queued notices.
	 */
	private static function print_notices() {
		$key     = self::NOTICE . get_current_user_id();
		$notices = get_transient( $key );
		if ( ! is_array( $notices ) ) {
			return;
		}
		delete_transient( $key );
		foreach ( $notices as $notice ) {
			$type = in_array( $notice[0], array( 'success', 'error', 'warning', 'info' ), true ) ? $notice[0] : 'info';
			printf(
				'<div class="notice notice-%1$s is-dismissible woosync-feedback"><p>%2$s</p></div>',
				esc_attr( $type ),
				esc_html( (string) $notice[1] )
			);
		}
	}

	/**
	 * Back to the page the action came from (filters kept), else the log.
	 */
	private static function redirect_back() {
		$referer = wp_get_referer();
		$target  = ( $referer && false !== strpos( $referer, 'page=' . self::SLUG ) ) ? $referer : self::url();
		$target  = remove_query_arg( array( 'woosync_done' ), $target );
		wp_safe_redirect( add_query_arg( 'woosync_done', '1', $target ) );
		exit;
	}

	// ---- actions ---------------------------------------------------------------------------------

	/**
	 * Waits (briefly) until the event's deliveries have an outcome after a (re)queue, and returns
	 * the event: until none is in flight and each pending one has had an attempt since
	 * $attempts_before attempts were logged (a retried delivery keeps its earlier attempts).
	 *
	 * @param string $id              Event id.
	 * @param float  $seconds         Longest wait.
	 * @param int    $attempts_before Attempts logged before a retry (0 for a new event).
	 * @return array|null
	 */
	private static function wait_for_event( $id, $seconds, $attempts_before = 0 ) {
		$deadline = microtime( true ) + $seconds;
		do {
			$event = Site_Scope::event( $id );
			if ( ! is_array( $event ) ) {
				return null;
			}
			// Deliveries are created by the sender shortly after dispatch (fan-out): none yet and
			// not unrouted means "not routed yet". A waiting delivery is still busy until an
			// attempt newer than the ones logged before (the count keeps growing across retries).
			$busy   = empty( $event['deliveries'] ) && empty( $event['unrouted'] );
			$logged = count( (array) ( $event['attempts'] ?? array() ) );
			foreach ( (array) ( $event['deliveries'] ?? array() ) as $delivery ) {
				if ( in_array( $delivery['state'] ?? '', array( 'pending', 'queued' ), true ) && $logged <= $attempts_before ) {
					$busy = true;
				}
				if ( 'in_flight' === ( $delivery['state'] ?? '' ) ) {
					$busy = true;
				}
			}
			if ( ! $busy ) {
				return $event;
			}
			usleep( 100000 );
		} while ( microtime( true ) < $deadline );
		return $event;
	}

	/**
	 * One line per delivery: "default: delivered (HTTP 200)".
	 *
	 * @param array $event woosync_event().
	 * @return string
	 */
	private static function outcome( array $event ) {
		$parts = array();
		foreach ( (array) ( $event['deliveries'] ?? array() ) as $delivery ) {
			list( $label ) = self::state_label( $delivery );
			$result        = self::result_text( $delivery['last_status'] ?? null, $delivery['last_error'] ?? null );
			$parts[]       = sprintf( '%1$s: %2$s%3$s', (string) ( $delivery['endpoint'] ?? '' ), strtolower( $label ), '' !== $result ? ' (' . $result . ')' : '' );
		}
		return implode( '; ', $parts );
	}

	/**
	 * admin-post: retry (requeue) one event.
	 */
	public static function handle_retry() {
		self::require_capability();
		$id = isset( $_REQUEST['event'] ) ? sanitize_text_field( wp_unslash( $_REQUEST['event'] ) ) : '';
		check_admin_referer( self::ACTION_RETRY . '_' . $id );
		if ( ! self::available() ) {
			self::add_notice( 'error', __( 'The woosync PHP extension is not loaded.', 'woosync' ) );
			self::redirect_back();
		}
		if ( ! self::is_event_id( $id ) ) {
			self::add_notice( 'error', __( 'That is not an event id.', 'woosync' ) );
			self::redirect_back();
		}
		try {
			$before = Site_Scope::event( $id );
			$before = is_array( $before ) ? count( (array) ( $before['attempts'] ?? array() ) ) : -1;
			if ( $before < 0 || ! Site_Scope::retry( $id ) ) {
				/* translators: %s: event id */
				self::add_notice( 'warning', sprintf( __( 'Event %s was not requeued: it is unknown or has nothing to retry.', 'woosync' ), $id ) );
				self::redirect_back();
			}
			$event = self::wait_for_event( $id, 3.0, $before );
			self::add_notice(
				'success',
				/* translators: 1: event id, 2: outcome per endpoint */
				sprintf( __( 'Event %1$s requeued. Result: %2$s.', 'woosync' ), $id, $event ? self::outcome( $event ) : '—' )
			);
		} catch ( \Throwable $e ) {
			/* translators: %s: error message */
			self::add_notice( 'error', sprintf( __( 'Retry failed: %s', 'woosync' ), $e->getMessage() ) );
		}
		self::redirect_back();
	}

	/**
	 * admin-post: requeue every dead delivery (one SQL transaction in the extension, so thousands
	 * are fine), optionally of one endpoint.
	 */
	public static function handle_retry_dead() {
		self::require_capability();
		check_admin_referer( self::ACTION_RETRY_ALL );
		if ( ! self::available() ) {
			self::add_notice( 'error', __( 'The woosync PHP extension is not loaded.', 'woosync' ) );
			self::redirect_back();
		}
		// Endpoint names may hold `@` (`wordpress@2` on multisite), which sanitize_key() drops.
		$endpoint = isset( $_POST['endpoint'] ) ? (string) preg_replace( '/[^a-z0-9_@-]/', '', strtolower( (string) wp_unslash( $_POST['endpoint'] ) ) ) : ''; // phpcs:ignore WordPress.Security.ValidatedSanitizedInput.InputNotSanitized -- reduced to the endpoint-name alphabet.
		try {
			$n = Site_Scope::retry_dead( '' === $endpoint ? null : $endpoint );
			self::add_notice(
				$n > 0 ? 'success' : 'info',
				/* translators: %s: number of deliveries */
				sprintf( _n( '%s dead delivery requeued; it is being sent again now.', '%s dead deliveries requeued; they are being sent again now.', $n, 'woosync' ), number_format_i18n( $n ) )
			);
		} catch ( \Throwable $e ) {
			/* translators: %s: error message */
			self::add_notice( 'error', sprintf( __( 'Retry failed: %s', 'woosync' ), $e->getMessage() ) );
		}
		self::redirect_back();
	}

	/**
	 * Dispatch options of the log's test event: a key of this site, and on a network whose sites
	 * share the outbox only this site's endpoints.
	 *
	 * @return array
	 */
	private static function test_options() {
		$options   = array( 'key' => '' !== Site_Scope::prefix() ? Site_Scope::key( 'test', 'log' ) : 'test:' . get_current_blog_id() );
		$endpoints = Site_Scope::dispatch_endpoints();
		if ( null !== $endpoints ) {
			$options['endpoints'] = $endpoints;
		}
		return $options;
	}

	/**
	 * admin-post: dispatch a `woosync.test` event to every endpoint and report what happened.
	 */
	public static function handle_test() {
		self::require_capability();
		check_admin_referer( self::ACTION_TEST );
		if ( ! self::available() ) {
			self::add_notice( 'error', __( 'The woosync PHP extension is not loaded.', 'woosync' ) );
			self::redirect_back();
		}
		try {
			$user = wp_get_current_user();
			$id   = woosync_dispatch(
				self::TEST_TOPIC,
				array(
					'message' => 'Test event from the WooSync log',
					'site'    => array(
						'url'     => home_url(),
						'blog_id' => get_current_blog_id(),
					),
					'sent_by' => $user ? (string) $user->user_login : '',
					'sent_at' => gmdate( 'Y-m-d\TH:i:s\Z' ),
				),
				self::test_options()
			);
			$event = self::wait_for_event( $id, 5.0 );
			$any   = false;
			$ok    = true;
			foreach ( (array) ( $event['deliveries'] ?? array() ) as $delivery ) {
				$any = true;
				if ( 'delivered' !== ( $delivery['state'] ?? '' ) ) {
					$ok = false;
				}
			}
			$ok = $ok && $any;
			if ( ! $any && ! empty( $event['unrouted'] ) ) {
				/* translators: %s: event id */
				self::add_notice( 'warning', sprintf( __( 'Test event %s was stored, but no endpoint is configured to receive it. Set the CRM URL in the WooSync settings.', 'woosync' ), $id ) );
			} elseif ( ! $any ) {
				/* translators: %s: event id */
				self::add_notice( 'warning', sprintf( __( 'Test event %s was stored and is waiting to be sent; reload in a moment to see the result.', 'woosync' ), $id ) );
			} else {
				self::add_notice(
					$ok ? 'success' : 'error',
					$ok
						/* translators: 1: event id, 2: outcome per endpoint */
						? sprintf( __( 'Test event %1$s delivered. %2$s.', 'woosync' ), $id, self::outcome( $event ) )
						/* translators: 1: event id, 2: outcome per endpoint */
						: sprintf( __( 'Test event %1$s was not delivered yet: %2$s. Open it below to see each attempt.', 'woosync' ), $id, self::outcome( $event ) )
				);
			}
		} catch ( \Throwable $e ) {
			/* translators: %s: error message */
			self::add_notice( 'error', sprintf( __( 'The test event could not be sent: %s', 'woosync' ), $e->getMessage() ) );
		}
		self::redirect_back();
	}

	/**
	 * admin-ajax: the detail of one event as HTML (for the modal).
	 */
	public static function ajax_event() {
		if ( ! current_user_can( self::capability() ) ) {
			wp_send_json_error( array( 'message' => __( 'Sorry, you are not allowed to do that.', 'woosync' ) ), 403 );
		}
		check_ajax_referer( self::AJAX_EVENT );
		$id = isset( $_GET['event'] ) ? sanitize_text_field( wp_unslash( $_GET['event'] ) ) : '';
		if ( ! self::available() || ! self::is_event_id( $id ) ) {
			wp_send_json_error( array( 'message' => __( 'Unknown event.', 'woosync' ) ), 404 );
		}
		try {
			$event = Site_Scope::event( $id );
			if ( ! is_array( $event ) ) {
				wp_send_json_error( array( 'message' => __( 'Unknown event.', 'woosync' ) ), 404 );
			}
			wp_send_json_success( array( 'html' => self::detail_html( $event, self::endpoints_by_name( woosync_status() ) ) ) );
		} catch ( \Throwable $e ) {
			wp_send_json_error( array( 'message' => $e->getMessage() ), 500 );
		}
	}

	// ---- rendering -------------------------------------------------------------------------------

	/**
	 * A small form posting to admin-post.php.
	 *
	 * @param string $action Action.
	 * @param string $nonce  Nonce action.
	 * @param string $label  Button label.
	 * @param array  $fields Hidden fields.
	 * @param string $class  Button classes.
	 * @param string $confirm Confirmation question (asked by log.js), or ''.
	 * @return string HTML.
	 */
	public static function action_form( $action, $nonce, $label, array $fields = array(), $class = 'button', $confirm = '' ) {
		$html  = '<form method="post" action="' . esc_url( admin_url( 'admin-post.php' ) ) . '" class="woosync-inline-form">';
		$html .= '<input type="hidden" name="action" value="' . esc_attr( $action ) . '">';
		foreach ( $fields as $name => $value ) {
			$html .= '<input type="hidden" name="' . esc_attr( $name ) . '" value="' . esc_attr( $value ) . '">';
		}
		$html .= wp_nonce_field( $nonce, '_wpnonce', true, false );
		$html .= '<button type="submit" class="' . esc_attr( $class ) . '"' . ( '' !== $confirm ? ' data-confirm="' . esc_attr( $confirm ) . '"' : '' ) . ' data-woosync-action="' . esc_attr( $action ) . '">' . esc_html( $label ) . '</button>';
		$html .= '</form>';
		return $html;
	}

	/**
	 * Retry form of one event.
	 *
	 * @param string $id    Event id.
	 * @param string $label Button label.
	 * @param string $class Button classes.
	 * @return string HTML.
	 */
	public static function retry_form( $id, $label, $class = 'button' ) {
		return self::action_form( self::ACTION_RETRY, self::ACTION_RETRY . '_' . $id, $label, array( 'event' => $id ), $class );
	}

	/**
	 * Nonce'd retry link (row action).
	 *
	 * @param string $id Event id.
	 * @return string URL.
	 */
	public static function retry_url( $id ) {
		return wp_nonce_url( add_query_arg( array( 'action' => self::ACTION_RETRY, 'event' => $id ), admin_url( 'admin-post.php' ) ), self::ACTION_RETRY . '_' . $id );
	}

	/**
	 * The page.
	 */
	public static function render_page() {
		self::require_capability();
		echo '<div class="wrap woosync-log">';
		echo '<h1 class="wp-heading-inline">' . esc_html__( 'WooSync log', 'woosync' ) . '</h1> ';
		if ( self::available() ) {
			echo self::action_form( self::ACTION_TEST, self::ACTION_TEST, __( 'Send test event', 'woosync' ), array(), 'page-title-action woosync-test-button' ); // phpcs:ignore WordPress.Security.EscapeOutput.OutputNotEscaped -- built from escaped parts.
		}
		echo '<hr class="wp-header-end">';
		self::print_notices();

		if ( ! self::available() ) {
			echo '<div class="notice notice-error"><p>' . esc_html__( 'The woosync PHP extension is not loaded (or is too old for this page), so there is no log to show and nothing is sent to your CRM. Install libwoosync.so and add "extension=/path/to/libwoosync.so" to php.ini for PHP-FPM and the CLI, then restart PHP-FPM.', 'woosync' ) . '</p></div></div>';
			return;
		}
		try {
			$status = woosync_status();
		} catch ( \Throwable $e ) {
			/* translators: %s: error message */
			echo '<div class="notice notice-error"><p>' . esc_html( sprintf( __( 'The outbox cannot be read: %s', 'woosync' ), $e->getMessage() ) ) . '</p></div></div>';
			return;
		}
		$endpoints = self::endpoints_by_name( $status );

		// phpcs:ignore WordPress.Security.NonceVerification.Recommended -- read-only view.
		$event_id = isset( $_GET['event'] ) ? sanitize_text_field( wp_unslash( $_GET['event'] ) ) : '';
		if ( '' !== $event_id ) {
			echo '<p><a href="' . esc_url( self::url() ) . '">&larr; ' . esc_html__( 'Back to the log', 'woosync' ) . '</a></p>';
			$event = self::is_event_id( $event_id ) ? Site_Scope::event( $event_id ) : null;
			if ( ! is_array( $event ) ) {
				echo '<div class="notice notice-warning"><p>' . esc_html__( 'Unknown event.', 'woosync' ) . '</p></div>';
			} else {
				echo '<div class="woosync-detail-page">' . self::detail_html( $event, $endpoints ) . '</div>'; // phpcs:ignore WordPress.Security.EscapeOutput.OutputNotEscaped -- escaped in detail_html().
			}
			echo '</div>';
			return;
		}

		self::render_summary( $status, $endpoints );

		require_once __DIR__ . '/class-log-table.php';
		$table = new Log_Table( $status, $endpoints );
		$table->prepare_items();
		$table->views();
		echo '<form method="get" id="woosync-log-filter">';
		// phpcs:ignore WordPress.Security.NonceVerification.Recommended
		$page = isset( $_REQUEST['page'] ) ? sanitize_key( wp_unslash( $_REQUEST['page'] ) ) : self::SLUG;
		echo '<input type="hidden" name="page" value="' . esc_attr( $page ) . '">';
		$table->search_box( __( 'Search event id or key', 'woosync' ), 'woosync-event' );
		$table->display();
		echo '</form>';
		echo '<p class="description woosync-footnote">' . esc_html__( 'One row per delivery (an event sent to two endpoints has two rows). Times are in the site\'s time zone. Signature header values are computed per attempt and are not stored; secrets are never shown.', 'woosync' ) . '</p>';
		echo '</div>';
	}

	/**
	 * Health, counts and the call to action.
	 *
	 * @param array $status    woosync_status().
	 * @param array $endpoints Endpoints by name.
	 */
	private static function render_summary( array $status, array $endpoints ) {
		$dead     = (int) ( $status['dead'] ?? 0 );
		$pending  = (int) ( $status['pending'] ?? 0 ) + (int) ( $status['in_flight'] ?? 0 );
		$settings = admin_url( 'options-general.php?page=woosync' );

		// Call to action first: what is wrong and the button that fixes it.
		$problems = array();
		$severe   = $dead > 0;
		foreach ( $endpoints as $name => $endpoint ) {
			$health = (string) ( $endpoint['health'] ?? '' );
			if ( 'disabled' === $health ) {
				$severe = true;
				list( , , $why ) = self::health( $endpoint );
				/* translators: 1: endpoint name, 2: reason */
				$problems[] = sprintf( __( 'Endpoint "%1$s" is disabled: %2$s. Check its URL with your CRM and save the settings again to re-enable it.', 'woosync' ), $name, $why );
			} elseif ( 'failing' === $health || 'paused' === $health ) {
				$err = (string) ( $endpoint['last_error'] ?? '' );
				/* translators: 1: endpoint name, 2: last error */
				$problems[] = sprintf( __( 'Endpoint "%1$s" is failing: %2$s. Deliveries are retried automatically.', 'woosync' ), $name, '' !== $err ? $err : __( 'unknown error', 'woosync' ) );
			}
		}
		if ( $dead > 0 || $problems ) {
			echo '<div class="notice ' . ( $severe ? 'notice-error' : 'notice-warning' ) . ' inline woosync-cta">';
			if ( $dead > 0 ) {
				echo '<p><strong>' . esc_html(
					sprintf(
						/* translators: %s: number of deliveries */
						_n( '%s delivery is dead: it failed every retry and will not be sent again on its own.', '%s deliveries are dead: they failed every retry and will not be sent again on their own.', $dead, 'woosync' ),
						number_format_i18n( $dead )
					)
				) . '</strong> ' . esc_html__( 'Fix the cause shown in "Last result", then retry them.', 'woosync' ) . '</p>';
			}
			foreach ( $problems as $problem ) {
				echo '<p>' . esc_html( $problem ) . '</p>';
			}
			echo '<p class="woosync-cta-actions">';
			if ( $dead > 0 ) {
				echo self::action_form( // phpcs:ignore WordPress.Security.EscapeOutput.OutputNotEscaped -- built from escaped parts.
					self::ACTION_RETRY_ALL,
					self::ACTION_RETRY_ALL,
					/* translators: %s: number of deliveries */
					sprintf( __( 'Retry all %s dead', 'woosync' ), number_format_i18n( $dead ) ),
					array(),
					'button button-primary woosync-retry-dead',
					__( 'Send every dead delivery again?', 'woosync' )
				);
				echo ' <a class="button" href="' . esc_url( self::url( array( 'status' => 'dead' ) ) ) . '">' . esc_html__( 'Show dead deliveries', 'woosync' ) . '</a>';
			}
			if ( class_exists( __NAMESPACE__ . '\\Settings' ) ) {
				echo ' <a class="button" href="' . esc_url( $settings ) . '">' . esc_html__( 'Open WooSync settings', 'woosync' ) . '</a>';
			}
			echo '</p></div>';
		} elseif ( ! $endpoints ) {
			echo '<div class="notice notice-warning inline woosync-cta"><p>' . esc_html__( 'No CRM endpoint is configured: events are stored but not sent anywhere.', 'woosync' ) . ' <a href="' . esc_url( $settings ) . '">' . esc_html__( 'Set the CRM URL', 'woosync' ) . '</a></p></div>';
		}

		echo '<div class="woosync-summary">';
		echo '<div class="woosync-endpoints">';
		foreach ( $endpoints as $name => $endpoint ) {
			list( $label, $mod, $text ) = self::health( $endpoint );
			echo '<div class="card woosync-endpoint woosync-endpoint--' . esc_attr( $mod ) . '" data-endpoint="' . esc_attr( $name ) . '">';
			echo '<h2 class="title">' . esc_html( $name ) . ' <span class="woosync-state woosync-state--' . esc_attr( $mod ) . '">' . esc_html( $label ) . '</span></h2>';
			echo '<p class="woosync-endpoint-url"><code>' . esc_html( (string) ( $endpoint['url'] ?? '' ) ) . '</code></p>';
			echo '<p>' . esc_html( $text ) . '</p>';
			$err = (string) ( $endpoint['last_error'] ?? '' );
			if ( '' !== $err && 'healthy' !== ( $endpoint['health'] ?? '' ) ) {
				/* translators: 1: error, 2: relative time */
				echo '<p class="description">' . esc_html( sprintf( __( 'Last error: %1$s (%2$s)', 'woosync' ), $err, self::relative( $endpoint['last_error_at'] ?? null ) ) ) . '</p>';
			}
			echo '<p class="description">' . esc_html(
				sprintf(
					/* translators: 1: pending count, 2: dead count */
					__( '%1$s pending · %2$s dead', 'woosync' ),
					number_format_i18n( (int) ( $endpoint['pending'] ?? 0 ) ),
					number_format_i18n( (int) ( $endpoint['dead'] ?? 0 ) )
				)
			) . '</p>';
			echo '</div>';
		}
		echo '</div>';

		echo '<table class="widefat striped woosync-counts"><tbody>';
		$rows = array(
			array( __( 'Pending', 'woosync' ), number_format_i18n( $pending ) ),
			array( __( 'Delivered', 'woosync' ), number_format_i18n( (int) ( $status['delivered'] ?? 0 ) ) ),
			array( __( 'Dead', 'woosync' ), number_format_i18n( $dead ) ),
			array( __( 'Superseded', 'woosync' ), number_format_i18n( (int) ( $status['superseded'] ?? 0 ) ) ),
			array( __( 'Unrouted', 'woosync' ), number_format_i18n( (int) ( $status['unrouted'] ?? 0 ) ) ),
			array( __( 'Oldest pending', 'woosync' ), self::age( $status['oldest_pending_age'] ?? null ) ),
			array( __( 'Last success', 'woosync' ), ! empty( $status['last_success_at'] ) ? self::relative( $status['last_success_at'] ) : '—' ),
		);
		foreach ( $rows as $row ) {
			echo '<tr><th scope="row">' . esc_html( $row[0] ) . '</th><td>' . esc_html( $row[1] ) . '</td></tr>';
		}
		echo '</tbody></table>';
		echo '</div>';
	}

	/**
	 * The headers an attempt carried, as far as the outbox knows them (signatures are computed
	 * per attempt and never stored; secrets are never shown).
	 *
	 * @param array      $event    woosync_event().
	 * @param array|null $endpoint Endpoint row (or null).
	 * @param array|null $attempt  Last attempt to that endpoint (or null).
	 * @return array<int,array{0:string,1:string}>
	 */
	public static function headers_sent( array $event, $endpoint, $attempt ) {
		$topic   = (string) ( $event['topic'] ?? '' );
		$parts   = explode( '.', $topic, 2 );
		$signed  = is_array( $endpoint ) ? '' !== (string) ( $endpoint['secret'] ?? '' ) : true;
		$version = phpversion( 'woosync' );
		$started = is_array( $attempt ) ? self::ts( $attempt['started_at'] ?? null ) : null;
		$rows    = array(
			array( 'Content-Type', 'application/json' ),
			array( 'User-Agent', 'woosync/' . ( false !== $version ? $version : '?' ) ),
			array( 'webhook-id', (string) ( $event['id'] ?? '' ) ),
			array( 'webhook-timestamp', null !== $started ? (string) $started : __( '(time of each attempt)', 'woosync' ) ),
		);
		if ( $signed ) {
			$rows[] = array( 'webhook-signature', __( 'v1,… (HMAC-SHA256, computed for each attempt; not stored)', 'woosync' ) );
		}
		$rows[] = array( 'X-WC-Webhook-Topic', $topic );
		$rows[] = array( 'X-WC-Webhook-Resource', $parts[0] );
		$rows[] = array( 'X-WC-Webhook-Event', $parts[1] ?? '' );
		$rows[] = array( 'X-WC-Webhook-Delivery-ID', is_array( $attempt ) && ! empty( $attempt['delivery_id'] ) ? (string) $attempt['delivery_id'] : __( '(new for each attempt)', 'woosync' ) );
		$rows[] = array( 'X-WC-Webhook-ID', __( '(the endpoint\'s number)', 'woosync' ) );
		if ( is_array( $endpoint ) && '' !== (string) ( $endpoint['source'] ?? '' ) ) {
			$rows[] = array( 'X-WC-Webhook-Source', (string) $endpoint['source'] );
		}
		if ( $signed ) {
			$rows[] = array( 'X-WC-Webhook-Signature', __( '(base64 HMAC-SHA256 of the body; not stored)', 'woosync' ) );
		}
		return $rows;
	}

	/**
	 * The detail of one event.
	 *
	 * @param array $event     woosync_event().
	 * @param array $endpoints Endpoints by name.
	 * @return string HTML (escaped).
	 */
	public static function detail_html( array $event, array $endpoints ) {
		$id       = (string) ( $event['id'] ?? '' );
		$body     = (string) ( $event['body'] ?? '' );
		$payload  = $event['payload'] ?? '';
		$payload  = is_string( $payload ) ? $payload : wp_json_encode( $payload );
		$attempts = (array) ( $event['attempts'] ?? array() );

		$h  = '<div class="woosync-detail" data-event="' . esc_attr( $id ) . '">';
		$h .= '<h2 class="woosync-detail-title">' . esc_html( (string) ( $event['topic'] ?? '' ) ) . ' <code>' . esc_html( $id ) . '</code></h2>';
		$h .= '<table class="widefat striped woosync-facts"><tbody>';
		$facts = array(
			array( __( 'Event id', 'woosync' ), esc_html( $id ) ),
			array( __( 'Topic', 'woosync' ), esc_html( (string) ( $event['topic'] ?? '' ) ) ),
			array( __( 'Key', 'woosync' ), esc_html( (string) ( $event['key'] ?? '' ) ) ),
			array( __( 'Sequence', 'woosync' ), esc_html( (string) ( $event['sequence'] ?? '' ) ) ),
			array( __( 'Created', 'woosync' ), self::time_html( $event['created_at'] ?? null ) ),
		);
		foreach ( $facts as $fact ) {
			$h .= '<tr><th scope="row">' . esc_html( $fact[0] ) . '</th><td>' . $fact[1] . '</td></tr>';
		}
		$h .= '</tbody></table>';

		// Deliveries and actions.
		$h         .= '<h3>' . esc_html__( 'Deliveries', 'woosync' ) . '</h3>';
		$h         .= '<table class="widefat striped woosync-deliveries"><thead><tr><th>' . esc_html__( 'Endpoint', 'woosync' ) . '</th><th>' . esc_html__( 'State', 'woosync' ) . '</th><th>' . esc_html__( 'Attempts', 'woosync' ) . '</th><th>' . esc_html__( 'Last result', 'woosync' ) . '</th><th>' . esc_html__( 'Updated', 'woosync' ) . '</th></tr></thead><tbody>';
		$retryable  = false;
		$deliveries = (array) ( $event['deliveries'] ?? array() );
		$logged     = Extension::logged_attempts( $event );
		foreach ( $deliveries as $delivery ) {
			$state = (string) ( $delivery['state'] ?? '' );
			if ( in_array( $state, array( 'dead', 'delivered', 'unrouted' ), true ) ) {
				$retryable = true;
			}
			$h .= '<tr class="woosync-delivery" data-endpoint="' . esc_attr( (string) ( $delivery['endpoint'] ?? '' ) ) . '" data-state="' . esc_attr( $state ) . '">';
			$h .= '<td>' . esc_html( (string) ( $delivery['endpoint'] ?? '' ) ) . '</td>';
			$h .= '<td>' . self::state_html( $delivery ) . '</td>';
			$h .= '<td class="woosync-attempt-count">' . esc_html( number_format_i18n( (int) ( $logged[ (string) ( $delivery['endpoint'] ?? '' ) ] ?? 0 ) ) ) . '</td>';
			$h .= '<td>' . esc_html( self::result_text( $delivery['last_status'] ?? null, $delivery['last_error'] ?? null ) ) . '</td>';
			$h .= '<td>' . self::time_html( $delivery['updated_at'] ?? null ) . '</td>';
			$h .= '</tr>';
		}
		if ( ! $deliveries && ! empty( $event['unrouted'] ) ) {
			$h        .= '<tr><td colspan="5">' . esc_html__( 'No endpoint matched this event when it was stored (unrouted).', 'woosync' ) . '</td></tr>';
			$retryable = true;
		} elseif ( ! $deliveries ) {
			$h .= '<tr><td colspan="5">' . esc_html__( 'Just stored: the sender is about to route it to the endpoints.', 'woosync' ) . '</td></tr>';
		}
		$h .= '</tbody></table>';
		if ( $retryable ) {
			$h .= '<p class="woosync-detail-actions">' . self::retry_form( $id, __( 'Retry this event', 'woosync' ), 'button button-primary woosync-retry-one' ) . ' <span class="description">' . esc_html__( 'Sends it again with the same id (dead: retry; delivered: replay; unrouted: route to the endpoints that match now).', 'woosync' ) . '</span></p>';
		}

		// Body exactly as sent.
		$h .= '<h3>' . esc_html__( 'Body sent', 'woosync' ) . '</h3>';
		$h .= self::body_block( 'standard', $body, __( 'The request body, byte for byte (Standard Webhooks envelope; the CRM\'s data is under "data"). Shown indented; "Copy" copies the exact bytes.', 'woosync' ) );
		$wc = array();
		foreach ( $deliveries as $delivery ) {
			$ep = $endpoints[ (string) ( $delivery['endpoint'] ?? '' ) ] ?? null;
			if ( is_array( $ep ) && 'woocommerce' === ( $ep['format'] ?? '' ) ) {
				$wc[] = (string) $delivery['endpoint'];
			}
		}
		if ( $wc ) {
			/* translators: %s: endpoint names */
			$h .= self::body_block( 'woocommerce', $payload, sprintf( __( 'Sent to %s (WooCommerce format): the "data" part only, byte for byte.', 'woosync' ), implode( ', ', $wc ) ) );
		}

		// Headers per endpoint.
		$h .= '<h3>' . esc_html__( 'Headers sent', 'woosync' ) . '</h3>';
		$h .= '<p class="description">' . esc_html__( 'Signature values are computed for each attempt from the endpoint\'s secret and are not stored; the secret is never shown. An endpoint without a secret sends unsigned requests (no signature headers).', 'woosync' ) . '</p>';
		$names = array();
		foreach ( $deliveries as $delivery ) {
			$names[] = (string) ( $delivery['endpoint'] ?? '' );
		}
		foreach ( array_unique( $names ) as $name ) {
			$last = null;
			foreach ( $attempts as $attempt ) {
				if ( ( $attempt['endpoint'] ?? '' ) === $name ) {
					$last = $attempt;
				}
			}
			if ( count( $names ) > 1 ) {
				$h .= '<h4>' . esc_html( $name ) . '</h4>';
			}
			$h .= '<table class="widefat striped woosync-headers" data-endpoint="' . esc_attr( $name ) . '"><thead><tr><th>' . esc_html__( 'Header', 'woosync' ) . '</th><th>' . esc_html__( 'Value (last attempt)', 'woosync' ) . '</th></tr></thead><tbody>';
			foreach ( self::headers_sent( $event, $endpoints[ $name ] ?? null, $last ) as $row ) {
				$h .= '<tr><th scope="row"><code>' . esc_html( $row[0] ) . '</code></th><td><code>' . esc_html( $row[1] ) . '</code></td></tr>';
			}
			$h .= '</tbody></table>';
		}

		// Attempts.
		$h .= '<h3>' . esc_html__( 'Attempts', 'woosync' ) . '</h3>';
		$h .= '<table class="widefat striped woosync-attempts"><thead><tr><th>#</th><th>' . esc_html__( 'Started', 'woosync' ) . '</th><th>' . esc_html__( 'Endpoint', 'woosync' ) . '</th><th>' . esc_html__( 'Result', 'woosync' ) . '</th><th>' . esc_html__( 'Latency', 'woosync' ) . '</th><th>' . esc_html__( 'Response (first 1 KB)', 'woosync' ) . '</th></tr></thead><tbody>';
		$n = 0;
		foreach ( $attempts as $attempt ) {
			++$n;
			$status = $attempt['http_status'] ?? null;
			$error  = $attempt['error'] ?? null;
			if ( ! empty( $attempt['error_class'] ) && null !== $error && '' !== $error ) {
				$error = $attempt['error_class'] . ': ' . $error;
			}
			$ok = null !== $status && (int) $status >= 200 && (int) $status < 300;
			$h .= '<tr class="woosync-attempt" data-status="' . esc_attr( (string) $status ) . '">';
			$h .= '<td>' . esc_html( (string) $n ) . '</td>';
			$h .= '<td>' . self::time_html( $attempt['started_at'] ?? null ) . '</td>';
			$h .= '<td>' . esc_html( (string) ( $attempt['endpoint'] ?? '' ) ) . '</td>';
			$h .= '<td><span class="woosync-state woosync-state--' . ( $ok ? 'delivered' : 'dead' ) . '">' . esc_html( self::result_text( $status, $error ) ) . '</span></td>';
			$h .= '<td>' . esc_html( self::ms( $attempt['duration_ms'] ?? null ) ) . '</td>';
			$resp = (string) ( $attempt['response'] ?? '' );
			$h   .= '<td>' . ( '' !== $resp ? '<pre class="woosync-response">' . esc_html( $resp ) . '</pre>' : '—' ) . '</td>';
			$h   .= '</tr>';
		}
		if ( 0 === $n ) {
			$h .= '<tr><td colspan="6">' . esc_html__( 'Not attempted yet.', 'woosync' ) . '</td></tr>';
		}
		$h .= '</tbody></table>';
		$h .= '</div>';
		return $h;
	}

	/**
	 * A body: indented view, hidden exact bytes, copy and toggle buttons.
	 *
	 * @param string $kind  standard|woocommerce.
	 * @param string $bytes Exact bytes.
	 * @param string $note  Explanation.
	 * @return string HTML.
	 */
	private static function body_block( $kind, $bytes, $note ) {
		$h  = '<div class="woosync-body" data-kind="' . esc_attr( $kind ) . '">';
		$h .= '<p class="description">' . esc_html( $note ) . ' ';
		/* translators: %s: number of bytes */
		$h .= esc_html( sprintf( _n( '%s byte.', '%s bytes.', strlen( $bytes ), 'woosync' ), number_format_i18n( strlen( $bytes ) ) ) ) . '</p>';
		$h .= '<p class="woosync-body-tools"><button type="button" class="button button-small woosync-copy">' . esc_html__( 'Copy', 'woosync' ) . '</button> ';
		$h .= '<button type="button" class="button button-small woosync-toggle-raw" aria-pressed="false">' . esc_html__( 'Show exact bytes', 'woosync' ) . '</button></p>';
		$h .= '<pre class="woosync-json woosync-pretty">' . esc_html( self::pretty_json( $bytes ) ) . '</pre>';
		$h .= '<pre class="woosync-json woosync-raw" hidden>' . esc_html( $bytes ) . '</pre>';
		$h .= '</div>';
		return $h;
	}
}
