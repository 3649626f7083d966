<?php
/**
 * Pushes the plugin's settings to the extension as the `wordpress` endpoint.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * The endpoint named `wordpress` lives in the outbox (the extension reads it at delivery time).
 * It is saved when the settings change, and again whenever the outbox path or the settings differ
 * from what was last pushed (for example after the outbox moved), so every outbox the site uses
 * knows it. An endpoint configured in php.ini (`default`) is never touched.
 */
class Endpoint_Sync {

	const NAME        = 'wordpress'; // On a single site; `wordpress@<blog_id>` on multisite: see name().
	const HASH_OPTION = 'woosync_endpoint_pushed';

	/**
	 * Settings.
	 *
	 * @var Settings
	 */
	private $settings;

	/**
	 * Constructor.
	 *
	 * @param Settings $settings Settings.
	 */
	public function __construct( Settings $settings ) {
		$this->settings = $settings;
	}

	/**
	 * The plugin's endpoint name for the current site (Site_Scope::endpoint_name()).
	 *
	 * @return string
	 */
	public static function name() {
		return Site_Scope::endpoint_name();
	}

	/**
	 * A URL with its password replaced by `****` (as the extension shows URLs), for display.
	 *
	 * @param string $url URL.
	 * @return string
	 */
	public static function mask_url( $url ) {
		return (string) preg_replace( '#^([a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@#i', '$1:****@', (string) $url );
	}

	/**
	 * Whether $url is $stored as mask_url() shows it (a form saved back unchanged).
	 *
	 * @param string $url    Submitted URL.
	 * @param string $stored Stored URL.
	 * @return bool
	 */
	public static function masked_url( $url, $stored ) {
		return '' !== (string) $stored && $url !== $stored && false !== strpos( $url, ':****@' ) && self::mask_url( $stored ) === $url;
	}

	/**
	 * The endpoint configuration for woosync_endpoint_save().
	 *
	 * @param array $values Settings values.
	 * @return array
	 */
	public static function config( array $values ) {
		$topics = array_values( array_filter( (array) ( $values['topics'] ?? array() ), 'is_string' ) );
		if ( ! array_diff( Settings::TOPICS, $topics ) ) {
			$topics = array(); // Every topic selected: send all (also future ones, e.g. reconcile).
		} else {
			$topics[] = 'woosync.*'; // Test events always pass; nothing selected sends only them.
		}
		return array(
			'url'            => (string) $values['url'],
			'topics'         => $topics,
			'enabled'        => ! empty( $values['enabled'] ),
			'format'         => 'standard',
			'source'         => home_url(),
			'proxy'          => (string) ( $values['proxy'] ?? '' ),
			'allow_networks' => (string) ( $values['allow_networks'] ?? '' ),
		);
	}

	/**
	 * Pushes the settings when they (or the outbox path) changed since the last push. Cheap when
	 * nothing changed: one comparison of an autoloaded option.
	 */
	public function maybe_push() {
		if ( ! Extension::has( 'woosync_endpoint_save' ) ) {
			return;
		}
		if ( get_option( self::HASH_OPTION ) !== $this->fingerprint( $this->settings->all() ) ) {
			$this->push( $this->settings->all() );
		}
	}

	/**
	 * Saves (or deletes, when no URL is set) the `wordpress` endpoint.
	 *
	 * @param array $values Settings values.
	 * @return true|\WP_Error
	 */
	public function push( array $values ) {
		if ( ! Extension::loaded() ) {
			return new \WP_Error( 'woosync_no_extension', __( 'The woosync PHP extension is not loaded, so the endpoint could not be saved in the outbox.', 'woosync' ) );
		}
		if ( ! Extension::has( 'woosync_endpoint_save' ) ) {
			return new \WP_Error( 'woosync_old_extension', __( 'This woosync extension is too old to store endpoints (woosync_endpoint_save is missing). Update the extension.', 'woosync' ) );
		}
		try {
			$this->retire_shared_name();
			if ( '' === (string) $values['url'] ) {
				if ( Extension::has( 'woosync_endpoint_delete' ) && $this->exists( self::name() ) ) {
					woosync_endpoint_delete( self::name() );
				}
			} else {
				$config = self::config( $values );
				$stored = Secret_Store::state();
				if ( 'unreadable' !== $stored['state'] ) {
					$config['secret'] = $stored['secret']; // '' = unsigned; when unreadable the outbox keeps its copy.
				}
				woosync_endpoint_save( self::name(), $config );
			}
			Site_Scope::forget_routes();
			update_option( self::HASH_OPTION, $this->fingerprint( $values ), true );
			return true;
		} catch ( \Throwable $e ) {
			return new \WP_Error( 'woosync_endpoint_save', $e->getMessage() );
		}
	}

	/**
	 * Whether the outbox knows the `wordpress` endpoint.
	 *
	 * @return bool
	 */
	private function exists( $name ) {
		if ( ! Extension::has( 'woosync_endpoints' ) ) {
			return false;
		}
		foreach ( (array) woosync_endpoints() as $endpoint ) {
			if ( is_array( $endpoint ) && ( $endpoint['name'] ?? '' ) === $name ) {
				return true;
			}
		}
		return false;
	}

	/**
	 * Multisite, upgrading from 0.1 (every site saved the one endpoint `wordpress`, so the last
	 * site saved steered every site's events): `wordpress` is deleted from this site's outbox,
	 * each site pushes its own `wordpress@<blog_id>` instead.
	 */
	private function retire_shared_name() {
		if ( is_multisite() && Extension::has( 'woosync_endpoint_delete' ) && $this->exists( self::NAME ) ) {
			woosync_endpoint_delete( self::NAME );
		}
	}

	/**
	 * What was pushed, where.
	 *
	 * @param array $values Settings values.
	 * @return string
	 */
	private function fingerprint( array $values ) {
		return md5( self::name() . '|' . Outbox_Location::current() . '|' . (string) ( $values['secret_id'] ?? '' ) . '|' . wp_json_encode( self::config( $values ) ) );
	}
}
