<?php
/**
 * GET /wp-json/woosync/v1/metrics: Prometheus metrics for a scraper holding a bearer token.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Serves woosync_metrics() as raw `text/plain; version=0.0.4` (not JSON) to a request with
 * `Authorization: Bearer <token>`. The token is generated (32 random bytes, hex), shown once, and
 * only its SHA-256 is stored; it is compared in constant time. Without a token the route does not
 * exist. A missing or wrong token gets 401 with `WWW-Authenticate: Bearer`.
 */
class Metrics_Endpoint {

	const NS     = 'woosync/v1';
	const ROUTE  = '/metrics';
	const OPTION = 'woosync_metrics_token_hash';
	const ACTION = 'woosync_metrics_token';
	const SHOWN  = 'woosync_metrics_token_new_';

	/**
	 * Content type of the Prometheus text exposition format.
	 */
	const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

	/**
	 * Hooks.
	 */
	public static function register() {
		add_action( 'rest_api_init', array( __CLASS__, 'register_route' ) );
		add_filter( 'rest_pre_serve_request', array( __CLASS__, 'serve_raw' ), 10, 4 );
		add_action( 'woosync_settings_page_end', array( __CLASS__, 'render' ), 20 );
		add_action( 'admin_post_' . self::ACTION, array( __CLASS__, 'handle' ) );
	}

	/**
	 * Whether a token is set (the route is on).
	 *
	 * @return bool
	 */
	public static function has_token() {
		return '' !== (string) get_option( self::OPTION, '' );
	}

	/**
	 * Makes a new token, stores its hash, returns the token (show it once).
	 *
	 * @return string
	 */
	public static function generate_token() {
		$token = bin2hex( random_bytes( 32 ) );
		update_option( self::OPTION, hash( 'sha256', $token ), false );
		return $token;
	}

	/**
	 * Deletes the token: the route is off.
	 */
	public static function delete_token() {
		delete_option( self::OPTION );
	}

	/**
	 * Registers the route (only when a token is set).
	 */
	public static function register_route() {
		if ( ! self::has_token() ) {
			return;
		}
		register_rest_route(
			self::NS,
			self::ROUTE,
			array(
				'methods'             => 'GET',
				'callback'            => array( __CLASS__, 'respond' ),
				'permission_callback' => array( __CLASS__, 'authorized' ),
			)
		);
	}

	/**
	 * Whether the request carries the right bearer token (constant-time comparison of hashes).
	 *
	 * @param \WP_REST_Request $request Request.
	 * @return true|\WP_Error
	 */
	public static function authorized( $request ) {
		$header = (string) $request->get_header( 'authorization' );
		$stored = (string) get_option( self::OPTION, '' );
		if ( '' !== $stored && preg_match( '/^Bearer\s+(\S+)\s*$/i', $header, $m ) && hash_equals( $stored, hash( 'sha256', $m[1] ) ) ) {
			return true;
		}
		return new \WP_Error( 'woosync_metrics_unauthorized', __( 'A valid bearer token is required.', 'woosync' ), array( 'status' => 401 ) );
	}

	/**
	 * The metrics text (served raw by serve_raw()).
	 *
	 * @return \WP_REST_Response|\WP_Error
	 */
	public static function respond() {
		if ( ! Extension::has( 'woosync_metrics' ) ) {
			return new \WP_Error( 'woosync_metrics_unavailable', __( 'The woosync PHP extension is not loaded (or too old for metrics).', 'woosync' ), array( 'status' => 503 ) );
		}
		try {
			$text = woosync_metrics();
		} catch ( \Throwable $e ) {
			return new \WP_Error( 'woosync_metrics_failed', Wpdb_Outbox::mask( $e->getMessage() ), array( 'status' => 503 ) );
		}
		$response = new \WP_REST_Response( $text, 200 );
		$response->header( 'Content-Type', self::CONTENT_TYPE );
		$response->header( 'Cache-Control', 'no-store' );
		return $response;
	}

	/**
	 * Sends the metrics as raw text instead of a JSON string; adds `WWW-Authenticate` to a 401.
	 *
	 * @param bool              $served  Whether the request was served.
	 * @param \WP_HTTP_Response $result  Response.
	 * @param \WP_REST_Request  $request Request.
	 * @param \WP_REST_Server   $server  Server.
	 * @return bool
	 */
	public static function serve_raw( $served, $result, $request, $server ) {
		if ( $served || self::NS . self::ROUTE !== ltrim( (string) $request->get_route(), '/' ) ) {
			return $served;
		}
		if ( 401 === $result->get_status() ) {
			$server->send_header( 'WWW-Authenticate', 'Bearer realm="woosync metrics"' );
			return $served;
		}
		$data = $result->get_data();
		if ( 200 !== $result->get_status() || ! is_string( $data ) ) {
			return $served;
		}
		$server->send_header( 'Content-Type', self::CONTENT_TYPE );
		echo $data; // phpcs:ignore WordPress.Security.EscapeOutput.OutputNotEscaped -- Prometheus text, not HTML.
		return true;
	}

	/**
	 * Settings → WooSync: the token (never shown again after generation), generate / delete.
	 */
	public static function render() {
		$user_id = get_current_user_id();
		echo '<h2>' . esc_html__( 'Prometheus metrics', 'woosync' ) . '</h2>';
		$new = get_transient( self::SHOWN . $user_id );
		if ( is_string( $new ) && '' !== $new ) {
			delete_transient( self::SHOWN . $user_id );
			echo '<div class="notice inline notice-info"><p>' . esc_html__( 'New metrics token (shown once; only its hash is kept):', 'woosync' ) . ' <code id="woosync-metrics-token">' . esc_html( $new ) . '</code></p></div>';
		}
		$url = rest_url( self::NS . self::ROUTE );
		if ( self::has_token() ) {
			/* translators: %s: metrics URL */
			echo '<p id="woosync-metrics-state">' . sprintf( esc_html__( 'On: scrape %s with the header "Authorization: Bearer <token>".', 'woosync' ), '<code>' . esc_html( $url ) . '</code>' ) . '</p>';
		} else {
			echo '<p id="woosync-metrics-state">' . esc_html__( 'Off: generate a token to let Prometheus scrape the outbox\'s metrics. `wp woosync metrics` prints them on the server.', 'woosync' ) . '</p>';
		}
		if ( ! current_user_can( 'manage_options' ) ) {
			return; // Shop managers see the state; administrators manage the token.
		}
		echo '<form action="' . esc_url( admin_url( 'admin-post.php' ) ) . '" method="post">';
		echo '<input type="hidden" name="action" value="' . esc_attr( self::ACTION ) . '" />';
		wp_nonce_field( self::ACTION );
		submit_button( self::has_token() ? __( 'Generate a new token', 'woosync' ) : __( 'Generate a token', 'woosync' ), 'secondary', 'generate', false );
		if ( self::has_token() ) {
			echo ' ';
			submit_button( __( 'Delete the token (metrics off)', 'woosync' ), 'delete', 'delete', false );
		}
		echo '</form>';
	}

	/**
	 * admin-post.php handler: generate or delete the token.
	 */
	public static function handle() {
		if ( ! current_user_can( 'manage_options' ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to do that.', 'woosync' ), 403 );
		}
		check_admin_referer( self::ACTION );
		if ( ! empty( $_POST['delete'] ) ) {
			self::delete_token();
		} else {
			set_transient( self::SHOWN . get_current_user_id(), self::generate_token(), 5 * MINUTE_IN_SECONDS );
		}
		wp_safe_redirect( admin_url( 'options-general.php?page=' . Settings::PAGE ) );
		exit;
	}
}
