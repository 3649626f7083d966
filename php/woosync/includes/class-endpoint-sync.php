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

	const NAME        = 'wordpress';
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
			'url'     => (string) $values['url'],
			'secret'  => (string) $values['secret'],
			'topics'  => $topics,
			'enabled' => ! empty( $values['enabled'] ),
			'format'  => 'standard',
			'source'  => home_url(),
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
			if ( '' === (string) $values['url'] ) {
				if ( Extension::has( 'woosync_endpoint_delete' ) && $this->exists() ) {
					woosync_endpoint_delete( self::NAME );
				}
			} else {
				woosync_endpoint_save( self::NAME, self::config( $values ) );
			}
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
	private function exists() {
		if ( ! Extension::has( 'woosync_endpoints' ) ) {
			return false;
		}
		foreach ( (array) woosync_endpoints() as $endpoint ) {
			if ( is_array( $endpoint ) && ( $endpoint['name'] ?? '' ) === self::NAME ) {
				return true;
			}
		}
		return false;
	}

	/**
	 * What was pushed, where.
	 *
	 * @param array $values Settings values.
	 * @return string
	 */
	private function fingerprint( array $values ) {
		return md5( Outbox_Location::current() . '|' . wp_json_encode( self::config( $values ) ) );
	}
}
