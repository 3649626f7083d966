<?php
/**
 * Settings → WooSync.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * The settings page (Settings API): CRM URL, signing secret (generate button; shown once, masked
 * afterwards), topics, CRM user for loop prevention, and a "send test event" button. Saving pushes
 * the endpoint to the extension.
 */
class Settings {

	const OPTION       = 'woosync_settings';
	const GROUP        = 'woosync';
	const PAGE         = 'woosync';
	const TEST_ACTION  = 'woosync_send_test';
	const NEW_SECRET   = 'woosync_new_secret_';
	const TEST_RESULT  = 'woosync_test_result_';

	/**
	 * Endpoint sync (set by the plugin).
	 *
	 * @var Endpoint_Sync|null
	 */
	private $endpoint_sync;

	/**
	 * Fallback table (set by the plugin).
	 *
	 * @var Fallback_Queue|null
	 */
	private $fallback;

	/**
	 * Gives the settings what the page needs.
	 *
	 * @param Endpoint_Sync  $endpoint_sync Endpoint sync.
	 * @param Fallback_Queue $fallback      Fallback table.
	 */
	public function init( Endpoint_Sync $endpoint_sync, Fallback_Queue $fallback ) {
		$this->endpoint_sync = $endpoint_sync;
		$this->fallback      = $fallback;
	}

	/**
	 * Wires the hooks.
	 */
	public function register() {
		add_action( 'admin_menu', array( $this, 'add_page' ) );
		add_action( 'admin_init', array( $this, 'register_setting' ) );
		add_filter( 'option_page_capability_' . self::GROUP, array( __CLASS__, 'capability' ) );
		add_action( 'add_option_' . self::OPTION, array( $this, 'on_added' ), 10, 2 );
		add_action( 'update_option_' . self::OPTION, array( $this, 'on_updated' ), 10, 2 );
		add_action( 'admin_post_' . self::TEST_ACTION, array( $this, 'handle_test' ) );
	}

	/**
	 * Topics the plugin sends. Plain names, usable at any time (labels need translations, which
	 * WordPress ≥ 6.7 only allows from `init` on: see topics()).
	 */
	const TOPICS = array(
		'product.stock_updated',
		'order.created',
		'order.updated',
		'order.status_changed',
		'customer.created',
		'customer.updated',
	);

	/**
	 * Topics the plugin sends, with translated labels (for the settings page; call it at `init`
	 * or later).
	 *
	 * @return array<string,string>
	 */
	public static function topics() {
		return array(
			'product.stock_updated' => __( 'Stock changes (products and variations)', 'woosync' ),
			'order.created'         => __( 'New orders', 'woosync' ),
			'order.updated'         => __( 'Order updates', 'woosync' ),
			'order.status_changed'  => __( 'Order status changes', 'woosync' ),
			'customer.created'      => __( 'New customers', 'woosync' ),
			'customer.updated'      => __( 'Customer updates', 'woosync' ),
		);
	}

	/**
	 * Capability needed to change the settings: `manage_woocommerce` where WooCommerce grants it
	 * to administrators, else `manage_options`.
	 *
	 * @return string
	 */
	public static function capability() {
		$admin = get_role( 'administrator' );
		$cap   = ( $admin && $admin->has_cap( 'manage_woocommerce' ) ) ? 'manage_woocommerce' : 'manage_options';
		return (string) apply_filters( 'woosync_capability', $cap );
	}

	/**
	 * Capability needed to change where events go (CRM URL, proxy, allowed networks): only
	 * administrators, never a shop manager, who could otherwise point deliveries (and the test
	 * button's answer) at internal services.
	 */
	const DESTINATION_CAP = 'manage_options';

	/**
	 * Whether the current user may change where events go.
	 *
	 * @return bool
	 */
	public static function can_change_destination() {
		return current_user_can( self::DESTINATION_CAP );
	}

	/**
	 * Defaults.
	 *
	 * @return array
	 */
	public static function defaults() {
		return array(
			'url'            => '',
			'secret_id'      => '',
			'proxy'          => '',
			'allow_networks' => '',
			'topics'         => self::TOPICS,
			'crm_user'       => 0,
			'enabled'        => true,
		);
	}

	/**
	 * All values.
	 *
	 * @return array
	 */
	public function all() {
		$values = get_option( self::OPTION, array() );
		return array_merge( self::defaults(), is_array( $values ) ? $values : array() );
	}

	/**
	 * One value.
	 *
	 * @param string $name Setting name.
	 * @return mixed
	 */
	public function get( $name ) {
		$values = $this->all();
		return $values[ $name ] ?? null;
	}

	/**
	 * Registers the setting, section and fields.
	 */
	public function register_setting() {
		register_setting(
			self::GROUP,
			self::OPTION,
			array(
				'type'              => 'array',
				'sanitize_callback' => array( $this, 'sanitize' ),
				'default'           => self::defaults(),
				'show_in_rest'      => false,
			)
		);
		add_settings_section( 'woosync_crm', __( 'CRM endpoint', 'woosync' ), array( $this, 'render_section' ), self::PAGE );
		add_settings_field( 'woosync_url', __( 'CRM URL', 'woosync' ), array( $this, 'render_url' ), self::PAGE, 'woosync_crm', array( 'label_for' => 'woosync_url' ) );
		add_settings_field( 'woosync_proxy', __( 'Proxy', 'woosync' ), array( $this, 'render_proxy' ), self::PAGE, 'woosync_crm', array( 'label_for' => 'woosync_proxy' ) );
		add_settings_field( 'woosync_allow_networks', __( 'Allowed private networks', 'woosync' ), array( $this, 'render_allow_networks' ), self::PAGE, 'woosync_crm', array( 'label_for' => 'woosync_allow_networks' ) );
		add_settings_field( 'woosync_secret', __( 'Signing secret', 'woosync' ), array( $this, 'render_secret' ), self::PAGE, 'woosync_crm', array( 'label_for' => 'woosync_secret' ) );
		add_settings_field( 'woosync_topics', __( 'Topics to send', 'woosync' ), array( $this, 'render_topics' ), self::PAGE, 'woosync_crm' );
		add_settings_field( 'woosync_crm_user', __( 'CRM user', 'woosync' ), array( $this, 'render_crm_user' ), self::PAGE, 'woosync_crm', array( 'label_for' => 'woosync_crm_user' ) );
		add_settings_field( 'woosync_enabled', __( 'Sending', 'woosync' ), array( $this, 'render_enabled' ), self::PAGE, 'woosync_crm' );
	}

	/**
	 * Adds Settings → WooSync.
	 */
	public function add_page() {
		add_options_page( __( 'WooSync', 'woosync' ), __( 'WooSync', 'woosync' ), self::capability(), self::PAGE, array( $this, 'render_page' ) );
	}

	/**
	 * Validates submitted values (runs inside options.php after its nonce and capability checks).
	 *
	 * @param mixed $input Submitted values.
	 * @return array
	 */
	public function sanitize( $input ) {
		$old   = $this->all();
		$moved = Secret_Store::migrate( $old );
		if ( null !== $moved ) {
			$old = $moved; // A plaintext secret of an older version: sealed before anything else.
		}
		$input = is_array( $input ) ? wp_unslash( $input ) : array();
		$out   = $old;

		$destination = array(
			'url'            => self::sanitize_url( $input, 'url', $old ),
			'proxy'          => self::sanitize_url( $input, 'proxy', $old ),
			'allow_networks' => self::sanitize_networks( $input, $old ),
		);
		$refused     = false;
		foreach ( $destination as $field => $value ) {
			if ( null === $value || (string) $value === (string) $old[ $field ] ) {
				continue;
			}
			if ( self::can_change_destination() ) {
				$out[ $field ] = $value;
			} else {
				$refused = true;
			}
		}
		if ( $refused ) {
			add_settings_error( self::OPTION, 'woosync_destination', __( 'Only administrators (manage_options) can change where events go: the CRM URL, proxy and allowed networks were kept. Your other changes were saved.', 'woosync' ) );
		}

		if ( ! empty( $input['generate_secret'] ) ) {
			$secret           = 'whsec_' . base64_encode( random_bytes( 32 ) ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode
			$out['secret_id'] = Secret_Store::set( $secret );
			// Shown once on the next page; sealed, not autoloaded (it expires) and short-lived.
			set_transient( self::NEW_SECRET . get_current_user_id(), Secret_Store::seal( $secret ), 2 * MINUTE_IN_SECONDS );
		} elseif ( ! empty( $input['clear_secret'] ) ) {
			$out['secret_id'] = Secret_Store::set( '' );
		} else {
			$secret = trim( (string) ( $input['secret'] ?? '' ) );
			if ( '' !== $secret ) {
				if ( self::valid_secret( $secret ) ) {
					$out['secret_id'] = Secret_Store::set( $secret );
				} else {
					add_settings_error( self::OPTION, 'woosync_secret', __( 'The secret must look like whsec_ followed by base64 (24 to 64 bytes). The previous secret was kept.', 'woosync' ) );
				}
			}
		}

		$topics        = array_map( 'strval', (array) ( $input['topics'] ?? array() ) );
		$out['topics'] = array_values( array_intersect( self::TOPICS, $topics ) );

		$crm_user = trim( (string) ( $input['crm_user'] ?? '' ) );
		if ( '' === $crm_user || '0' === $crm_user ) {
			$out['crm_user'] = 0;
		} else {
			$user = ctype_digit( $crm_user ) ? get_user_by( 'id', (int) $crm_user ) : get_user_by( 'login', $crm_user );
			if ( $user ) {
				$out['crm_user'] = (int) $user->ID;
			} else {
				add_settings_error( self::OPTION, 'woosync_crm_user', __( 'No user with that login or id: the CRM user was not changed.', 'woosync' ) );
			}
		}

		$out['enabled'] = ! empty( $input['enabled'] );
		return $out;
	}

	/**
	 * A submitted URL field (`url` or `proxy`): the new value, or null when it was not submitted
	 * or is not valid (an error is added; the old value stays).
	 *
	 * @param array  $input Submitted values.
	 * @param string $field Field name.
	 * @param array  $old   Current values.
	 * @return string|null
	 */
	private static function sanitize_url( array $input, $field, array $old ) {
		if ( ! array_key_exists( $field, $input ) ) {
			return null;
		}
		$url = trim( (string) $input[ $field ] );
		if ( '' === $url ) {
			return '';
		}
		if ( Endpoint_Sync::masked_url( $url, (string) $old[ $field ] ) ) {
			return (string) $old[ $field ]; // Saved back as shown (password masked): keep the stored one.
		}
		if ( preg_match( '#^https?://[^\s/?\#]+(/\S*)?$#i', $url ) && in_array( strtolower( (string) wp_parse_url( $url, PHP_URL_SCHEME ) ), array( 'http', 'https' ), true ) ) {
			// wp_http_validate_url() refuses local addresses, but a CRM on the LAN is fine when an
			// administrator allows its network (the extension's destination policy decides).
			return esc_url_raw( $url, array( 'http', 'https' ) );
		}
		add_settings_error(
			self::OPTION,
			'woosync_' . $field,
			'url' === $field ? __( 'The CRM URL must start with http:// or https://.', 'woosync' ) : __( 'The proxy must be an http:// or https:// URL.', 'woosync' )
		);
		return null;
	}

	/**
	 * The submitted allowed networks (comma or space separated CIDRs) normalized to `a/n,b/m`, or
	 * null when not submitted or not valid (an error is added; the old value stays).
	 *
	 * @param array $input Submitted values.
	 * @param array $old   Current values.
	 * @return string|null
	 */
	private static function sanitize_networks( array $input, array $old ) {
		unset( $old );
		if ( ! array_key_exists( 'allow_networks', $input ) ) {
			return null;
		}
		$list = array();
		foreach ( preg_split( '/[\s,]+/', trim( (string) $input['allow_networks'] ), -1, PREG_SPLIT_NO_EMPTY ) as $cidr ) {
			if ( ! self::valid_cidr( $cidr ) ) {
				/* translators: %s: the entry that is not a network */
				add_settings_error( self::OPTION, 'woosync_allow_networks', sprintf( __( 'Allowed private networks: "%s" is not a network such as 192.168.1.0/24 or 10.0.0.5/32; nothing was changed there.', 'woosync' ), mb_substr( $cidr, 0, 100 ) ) );
				return null;
			}
			$list[] = $cidr;
		}
		return implode( ',', array_unique( $list ) );
	}

	/**
	 * Whether a string is an IPv4 or IPv6 network in CIDR notation.
	 *
	 * @param string $cidr Text.
	 * @return bool
	 */
	public static function valid_cidr( $cidr ) {
		if ( ! preg_match( '#^([0-9a-fA-F:.]+)/(\d{1,3})$#', $cidr, $m ) ) {
			return false;
		}
		$packed = @inet_pton( $m[1] ); // phpcs:ignore WordPress.PHP.NoSilencedErrors.Discouraged
		if ( false === $packed ) {
			return false;
		}
		return (int) $m[2] <= strlen( $packed ) * 8;
	}

	/**
	 * Whether a string is a `whsec_` secret with 24..64 bytes of key.
	 *
	 * @param string $secret Secret.
	 * @return bool
	 */
	public static function valid_secret( $secret ) {
		if ( ! preg_match( '#^whsec_[A-Za-z0-9+/]+={0,2}$#', $secret ) ) {
			return false;
		}
		$raw = base64_decode( substr( $secret, 6 ), true ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_decode
		return false !== $raw && strlen( $raw ) >= 24 && strlen( $raw ) <= 64;
	}

	/**
	 * The option was created: push it.
	 *
	 * @param string $option Option name.
	 * @param mixed  $value  New value.
	 */
	public function on_added( $option, $value ) {
		unset( $option );
		$value = is_array( $value ) ? $value : array();
		if ( $this->seal_plaintext( $value ) ) {
			return;
		}
		$this->after_save( $value );
	}

	/**
	 * The option changed: push it.
	 *
	 * @param mixed $old_value Old value.
	 * @param mixed $value     New value.
	 */
	public function on_updated( $old_value, $value ) {
		unset( $old_value );
		$value = is_array( $value ) ? $value : array();
		if ( $this->seal_plaintext( $value ) ) {
			return;
		}
		$this->after_save( $value );
	}

	/**
	 * Code that writes the option directly may still give a plaintext `secret` (as versions up to
	 * 0.1 stored it): it is sealed into the secret store and the option written again without it
	 * (which pushes the endpoint).
	 *
	 * @param array $value Saved values.
	 * @return bool Whether the option was rewritten (the push happened then).
	 */
	private function seal_plaintext( array $value ) {
		$moved = Secret_Store::migrate( $value );
		if ( null === $moved ) {
			return false;
		}
		update_option( self::OPTION, $moved );
		return true;
	}

	/**
	 * First request after an upgrade from a version that kept the secret in plaintext in this
	 * (autoloaded) option: seal it and drop it from the option, keeping the secret in use.
	 */
	public function migrate_secret() {
		$values = get_option( self::OPTION );
		if ( is_array( $values ) && array_key_exists( 'secret', $values ) ) {
			$this->seal_plaintext( $values );
		}
	}

	/**
	 * Pushes the saved values to the extension; reports a failure on the settings page.
	 *
	 * @param array $value Saved values.
	 */
	private function after_save( array $value ) {
		if ( ! $this->endpoint_sync ) {
			return;
		}
		$result = $this->endpoint_sync->push( array_merge( self::defaults(), $value ) );
		if ( is_wp_error( $result ) && function_exists( 'add_settings_error' ) ) {
			/* translators: %s: error message from the woosync extension */
			add_settings_error( self::OPTION, 'woosync_push', sprintf( __( 'Settings saved, but the endpoint could not be stored in the outbox: %s', 'woosync' ), $result->get_error_message() ) );
		}
	}

	/**
	 * Masks a secret: `whsec_abcd…wxyz`.
	 *
	 * @param string $secret Secret.
	 * @return string
	 */
	public static function mask( $secret ) {
		if ( '' === $secret ) {
			return '';
		}
		return substr( $secret, 0, 10 ) . '…' . substr( $secret, -4 );
	}

	/**
	 * Section intro.
	 */
	public function render_section() {
		echo '<p>' . esc_html__( 'Where WooSync sends stock, order and customer changes. Deliveries are signed (Standard Webhooks and X-WC-Webhook-Signature), in order per object, and retried until the CRM accepts them.', 'woosync' ) . '</p>';
	}

	/**
	 * CRM URL field.
	 */
	public function render_url() {
		printf(
			'<input type="url" class="regular-text code" id="woosync_url" name="%1$s[url]" value="%2$s" placeholder="https://crm.example.com/webhooks/woocommerce" %3$s/>',
			esc_attr( self::OPTION ),
			esc_attr( Endpoint_Sync::mask_url( (string) $this->get( 'url' ) ) ),
			self::can_change_destination() ? '' : 'disabled="disabled" '
		);
		echo '<p class="description woosync-destination-note">';
		if ( self::can_change_destination() ) {
			esc_html_e( 'Only administrators can change where events go (CRM URL, proxy, allowed networks); shop managers see these fields read-only.', 'woosync' );
		} else {
			esc_html_e( 'Only administrators (manage_options) can change where events go: the CRM URL, proxy and allowed networks are read-only for you.', 'woosync' );
		}
		echo '</p>';
	}

	/**
	 * Proxy field (administrators only).
	 */
	public function render_proxy() {
		printf(
			'<input type="url" class="regular-text code" id="woosync_proxy" name="%1$s[proxy]" value="%2$s" placeholder="http://proxy.example.com:3128" %3$s/>',
			esc_attr( self::OPTION ),
			esc_attr( Endpoint_Sync::mask_url( (string) $this->get( 'proxy' ) ) ),
			self::can_change_destination() ? '' : 'disabled="disabled" '
		);
		echo '<p class="description">' . esc_html__( 'Optional HTTP(S) proxy for deliveries. With a proxy, the destination policy applies to the proxy\'s address.', 'woosync' ) . '</p>';
	}

	/**
	 * Allowed networks field (administrators only).
	 */
	public function render_allow_networks() {
		printf(
			'<input type="text" class="regular-text code" id="woosync_allow_networks" name="%1$s[allow_networks]" value="%2$s" placeholder="192.168.1.0/24" %3$s/>',
			esc_attr( self::OPTION ),
			esc_attr( (string) $this->get( 'allow_networks' ) ),
			self::can_change_destination() ? '' : 'disabled="disabled" '
		);
		echo '<p class="description">' . esc_html__( 'Deliveries to loopback, private, link-local and other internal addresses are refused. List the networks your CRM may be on (comma-separated CIDRs, e.g. 192.168.1.0/24) to allow them for this endpoint.', 'woosync' ) . '</p>';
	}

	/**
	 * Secret field: never prints the stored secret, only a masked form.
	 */
	public function render_secret() {
		$stored = Secret_Store::state();
		$secret = $stored['secret'];
		if ( 'unreadable' === $stored['state'] ) {
			echo '<p class="notice notice-error inline" id="woosync-secret-unreadable">' . esc_html( Secret_Store::unreadable_message() ) . '</p>';
		}
		printf(
			'<input type="password" class="regular-text code" id="woosync_secret" name="%1$s[secret]" value="" autocomplete="new-password" placeholder="%2$s" /> ',
			esc_attr( self::OPTION ),
			esc_attr( '' !== $secret ? self::mask( $secret ) : 'whsec_…' )
		);
		printf(
			'<button type="submit" class="button" name="%1$s[generate_secret]" value="1">%2$s</button>',
			esc_attr( self::OPTION ),
			esc_html__( 'Generate whsec_ secret', 'woosync' )
		);
		echo '<p class="description">';
		if ( '' !== $secret ) {
			/* translators: %s: masked secret */
			printf( esc_html__( 'Current secret: %s. Leave the field empty to keep it.', 'woosync' ), '<code>' . esc_html( self::mask( $secret ) ) . '</code>' );
			printf(
				' <label><input type="checkbox" name="%1$s[clear_secret]" value="1" /> %2$s</label>',
				esc_attr( self::OPTION ),
				esc_html__( 'Send unsigned (remove the secret)', 'woosync' )
			);
		} else {
			esc_html_e( 'No secret: deliveries are unsigned. Generate one and enter it in your CRM.', 'woosync' );
		}
		echo '</p>';
	}

	/**
	 * Topic checkboxes.
	 */
	public function render_topics() {
		$selected = (array) $this->get( 'topics' );
		echo '<fieldset>';
		foreach ( self::topics() as $topic => $label ) {
			printf(
				'<label><input type="checkbox" name="%1$s[topics][]" value="%2$s" %3$s /> %4$s <code>%5$s</code></label><br />',
				esc_attr( self::OPTION ),
				esc_attr( $topic ),
				checked( in_array( $topic, $selected, true ), true, false ),
				esc_html( $label ),
				esc_html( $topic )
			);
		}
		echo '</fieldset>';
	}

	/**
	 * CRM user field.
	 */
	public function render_crm_user() {
		$user_id = (int) $this->get( 'crm_user' );
		$user    = $user_id ? get_user_by( 'id', $user_id ) : false;
		printf(
			'<input type="text" class="regular-text" id="woosync_crm_user" name="%1$s[crm_user]" value="%2$s" />',
			esc_attr( self::OPTION ),
			esc_attr( $user ? $user->user_login : '' )
		);
		echo '<p class="description">' . esc_html__( 'Login of the user your CRM writes back with (REST API). Changes made by that user are not sent back to the CRM.', 'woosync' ) . '</p>';
	}

	/**
	 * Enabled checkbox.
	 */
	public function render_enabled() {
		printf(
			'<label><input type="checkbox" name="%1$s[enabled]" value="1" %2$s /> %3$s</label>',
			esc_attr( self::OPTION ),
			checked( (bool) $this->get( 'enabled' ), true, false ),
			esc_html__( 'Deliver events to this CRM', 'woosync' )
		);
	}

	/**
	 * The page.
	 */
	public function render_page() {
		if ( ! current_user_can( self::capability() ) ) {
			return;
		}
		$user_id    = get_current_user_id();
		$new_secret = get_transient( self::NEW_SECRET . $user_id );
		$new_secret = is_string( $new_secret ) ? (string) Secret_Store::open( $new_secret ) : '';
		$result     = get_transient( self::TEST_RESULT . $user_id );
		echo '<div class="wrap"><h1>' . esc_html__( 'WooSync', 'woosync' ) . '</h1>';
		settings_errors( self::OPTION );

		if ( '' !== $new_secret ) {
			delete_transient( self::NEW_SECRET . $user_id );
			echo '<div class="notice notice-info"><p>' . esc_html__( 'New signing secret (shown once; copy it into your CRM now):', 'woosync' ) . ' <code id="woosync-new-secret">' . esc_html( $new_secret ) . '</code></p></div>';
		}
		if ( is_array( $result ) ) {
			delete_transient( self::TEST_RESULT . $user_id );
			$class = ! empty( $result['ok'] ) ? 'notice-success' : 'notice-error';
			echo '<div class="notice ' . esc_attr( $class ) . '" id="woosync-test-result"><p>' . esc_html( (string) $result['message'] ) . '</p></div>';
		}

		echo '<form action="' . esc_url( admin_url( 'options.php' ) ) . '" method="post">';
		settings_fields( self::GROUP );
		do_settings_sections( self::PAGE );
		submit_button();
		echo '</form>';

		echo '<h2>' . esc_html__( 'Test', 'woosync' ) . '</h2>';
		echo '<form action="' . esc_url( admin_url( 'admin-post.php' ) ) . '" method="post">';
		echo '<input type="hidden" name="action" value="' . esc_attr( self::TEST_ACTION ) . '" />';
		wp_nonce_field( self::TEST_ACTION );
		submit_button( __( 'Send test event', 'woosync' ), 'secondary', 'woosync_send_test', false );
		echo '</form>';

		$this->render_status();
		/**
		 * Settings → WooSync: more sections, each with its own form (e.g. the outbox storage).
		 */
		do_action( 'woosync_settings_page_end' );
		echo '</div>';
	}

	/**
	 * Outbox and endpoint health.
	 */
	private function render_status() {
		echo '<h2>' . esc_html__( 'Status', 'woosync' ) . '</h2>';
		$status = Extension::status( $error );
		if ( null === $status ) {
			echo '<p>' . esc_html( (string) $error ) . '</p>';
		} else {
			echo '<table class="widefat striped" style="max-width:50em"><tbody>';
			$rows = array(
				__( 'Outbox', 'woosync' )             => Wpdb_Outbox::mask( (string) ( $status['database'] ?? Outbox_Location::current() ) ),
				__( 'Pending', 'woosync' )            => (string) ( $status['pending'] ?? 0 ),
				__( 'Delivered', 'woosync' )          => (string) ( $status['delivered'] ?? 0 ),
				__( 'Dead', 'woosync' )               => (string) ( $status['dead'] ?? 0 ),
				__( 'Oldest pending (s)', 'woosync' ) => null === ( $status['oldest_pending_age'] ?? null ) ? '–' : (string) round( (float) $status['oldest_pending_age'] ),
				__( 'Last error', 'woosync' )         => (string) ( $status['last_error'] ?? '' ),
			);
			foreach ( $rows as $label => $value ) {
				echo '<tr><th scope="row">' . esc_html( $label ) . '</th><td><code>' . esc_html( $value ) . '</code></td></tr>';
			}
			echo '</tbody></table>';
		}
		if ( $this->fallback ) {
			/* translators: 1: events kept in the fallback table, 2: events dropped */
			echo '<p>' . esc_html( sprintf( __( 'Fallback table: %1$d waiting, %2$d dropped.', 'woosync' ), $this->fallback->count(), $this->fallback->dropped() ) ) . '</p>';
		}
	}

	/**
	 * "Send test event": dispatches a signed `woosync.test` to the `wordpress` endpoint, waits
	 * (at most 10 s) for its result and shows it on the settings page.
	 */
	public function handle_test() {
		if ( ! current_user_can( self::capability() ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to do that.', 'woosync' ), '', array( 'response' => 403 ) );
		}
		check_admin_referer( self::TEST_ACTION );
		$result = self::send_test( Endpoint_Sync::name(), 10.0 );
		set_transient( self::TEST_RESULT . get_current_user_id(), $result, 5 * MINUTE_IN_SECONDS );
		wp_safe_redirect( admin_url( 'options-general.php?page=' . self::PAGE ) );
		exit;
	}

	/**
	 * Sends a `woosync.test` event and waits for its outcome.
	 *
	 * @param string|null $endpoint Endpoint name, or null for every endpoint.
	 * @param float       $timeout  Seconds to wait.
	 * @return array{ok:bool,message:string,event_id:string,deliveries:array}
	 */
	public static function send_test( $endpoint, $timeout ) {
		$out = array(
			'ok'         => false,
			'message'    => '',
			'event_id'   => '',
			'deliveries' => array(),
		);
		if ( ! Extension::loaded() ) {
			$out['message'] = __( 'The woosync PHP extension is not loaded: nothing can be sent.', 'woosync' );
			return $out;
		}
		try {
			$options = array();
			if ( null !== $endpoint && '' !== $endpoint ) {
				if ( ! Site_Scope::owns_endpoint( $endpoint ) ) {
					/* translators: %s: endpoint name */
					$out['message'] = sprintf( __( 'Endpoint "%s" belongs to another site of the network.', 'woosync' ), $endpoint );
					return $out;
				}
				$options['endpoints'] = array( $endpoint );
			} elseif ( null !== Site_Scope::dispatch_endpoints() ) {
				$options['endpoints'] = Site_Scope::dispatch_endpoints();
			}
			if ( '' !== Site_Scope::prefix() ) {
				$options['key'] = Site_Scope::key( 'test', 'send' );
			}
			$payload = array(
				'message' => 'Test event from WooSync',
				'site'    => array(
					'url'     => home_url(),
					'blog_id' => get_current_blog_id(),
				),
				'sent_by' => get_current_user_id(),
			);
			$id              = woosync_dispatch( 'woosync.test', $payload, $options );
			$out['event_id'] = $id;
			$deadline        = microtime( true ) + $timeout;
			do {
				$event = woosync_event( $id );
				$done  = is_array( $event ) && ! empty( $event['deliveries'] );
				foreach ( (array) ( $event['deliveries'] ?? array() ) as $delivery ) {
					if ( ! in_array( $delivery['state'] ?? '', array( 'delivered', 'dead' ), true ) ) {
						$done = false;
					}
				}
				if ( $done || ( is_array( $event ) && ! empty( $event['unrouted'] ) ) ) {
					break;
				}
				usleep( 100000 );
			} while ( microtime( true ) < $deadline );
			$out['deliveries'] = (array) ( $event['deliveries'] ?? array() );
		} catch ( \Throwable $e ) {
			/* translators: %s: error message */
			$out['message'] = sprintf( __( 'The test event could not be sent: %s', 'woosync' ), $e->getMessage() );
			return $out;
		}
		if ( empty( $out['deliveries'] ) ) {
			$out['message'] = __( 'No endpoint takes this event: set a CRM URL (or check the endpoint name).', 'woosync' );
			return $out;
		}
		$parts = array();
		$ok    = true;
		foreach ( $out['deliveries'] as $delivery ) {
			$state = (string) ( $delivery['state'] ?? '' );
			if ( 'delivered' === $state ) {
				/* translators: 1: endpoint name, 2: HTTP status */
				$parts[] = sprintf( __( '%1$s: delivered (HTTP %2$s)', 'woosync' ), $delivery['endpoint'], (string) ( $delivery['last_status'] ?? '' ) );
			} else {
				$ok = false;
				/* translators: 1: endpoint name, 2: state, 3: last error */
				$parts[] = sprintf( __( '%1$s: %2$s (%3$s)', 'woosync' ), $delivery['endpoint'], $state, (string) ( $delivery['last_error'] ?? '' ) );
			}
		}
		$out['ok'] = $ok;
		if ( ! $ok ) {
			$status = Extension::status();
			if ( is_array( $status ) && ! empty( $status['worker_error'] ) ) {
				$parts[] = sprintf( 'sender: %s', (string) $status['worker_error'] );
			}
		}
		/* translators: 1: event id, 2: per-endpoint results */
		$out['message'] = sprintf( $ok ? __( 'Test event %1$s delivered. %2$s', 'woosync' ) : __( 'Test event %1$s not delivered yet. %2$s', 'woosync' ), $out['event_id'], implode( '; ', $parts ) );
		return $out;
	}
}
