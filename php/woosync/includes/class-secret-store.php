<?php
/**
 * Where the plugin keeps the signing secret: sealed, in an option that is not autoloaded.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * The signing secret of the site's endpoint is kept sealed (XSalsa20-Poly1305, libsodium's
 * secretbox, which WordPress always provides) in the `woosync_secret` option, not autoloaded, with
 * a key derived from the site's secret salts (AUTH_KEY, SECURE_AUTH_KEY) and the `WOOSYNC_KEY`
 * constant when wp-config.php defines it. The autoloaded `woosync_settings` option only holds
 * `secret_id`, a random tag that changes with every new secret (so saving a new secret changes the
 * settings and pushes the endpoint). The outbox keeps its own copy, sealed by the extension with
 * woosync.key.
 *
 * Versions up to 0.1 kept the secret in plaintext in `woosync_settings`; migrate() moves it here
 * (on the first request after the upgrade) without losing it.
 *
 * If the salts change, the sealed secret can no longer be opened: state() says `unreadable`, the
 * settings page, the admin notice and `wp woosync status` say so, and the admin enters or
 * generates a new secret.
 */
class Secret_Store {

	const OPTION = 'woosync_secret';
	const PREFIX = 'woosync-sealed-v1:';

	/**
	 * The sealing key (32 bytes).
	 *
	 * @return string
	 */
	private static function key() {
		$material = 'woosync-plugin-secret';
		foreach ( array( 'WOOSYNC_KEY', 'AUTH_KEY', 'SECURE_AUTH_KEY' ) as $constant ) {
			$material .= '|' . ( defined( $constant ) ? (string) constant( $constant ) : '' );
		}
		return hash( 'sha256', $material, true );
	}

	/**
	 * Seals a string.
	 *
	 * @param string $plain Plain text.
	 * @return string `woosync-sealed-v1:` + base64(nonce . box).
	 */
	public static function seal( $plain ) {
		$nonce = random_bytes( SODIUM_CRYPTO_SECRETBOX_NONCEBYTES );
		return self::PREFIX . base64_encode( $nonce . sodium_crypto_secretbox( (string) $plain, $nonce, self::key() ) ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode
	}

	/**
	 * Opens a sealed string.
	 *
	 * @param string $sealed Result of seal().
	 * @return string|null Null when it cannot be opened (other key, damaged).
	 */
	public static function open( $sealed ) {
		$sealed = (string) $sealed;
		if ( 0 !== strpos( $sealed, self::PREFIX ) ) {
			return null;
		}
		$raw = base64_decode( substr( $sealed, strlen( self::PREFIX ) ), true ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_decode
		if ( false === $raw || strlen( $raw ) <= SODIUM_CRYPTO_SECRETBOX_NONCEBYTES ) {
			return null;
		}
		try {
			$plain = sodium_crypto_secretbox_open( substr( $raw, SODIUM_CRYPTO_SECRETBOX_NONCEBYTES ), substr( $raw, 0, SODIUM_CRYPTO_SECRETBOX_NONCEBYTES ), self::key() );
		} catch ( \Throwable $e ) {
			return null;
		}
		return false === $plain ? null : $plain;
	}

	/**
	 * Stores a new secret ('' removes it: deliveries are unsigned).
	 *
	 * @param string $secret Secret.
	 * @return string The new `secret_id` for the settings ('' without a secret).
	 */
	public static function set( $secret ) {
		$secret = (string) $secret;
		if ( '' === $secret ) {
			delete_option( self::OPTION );
			return '';
		}
		$sealed = self::seal( $secret );
		if ( false === get_option( self::OPTION ) ) {
			add_option( self::OPTION, $sealed, '', false );
		} else {
			update_option( self::OPTION, $sealed, false );
		}
		return substr( hash( 'sha256', $sealed ), 0, 16 );
	}

	/**
	 * The secret and whether it can be read.
	 *
	 * @return array{state:string,secret:string} `state`: `none` (no secret: unsigned), `ok`, or
	 *                                             `unreadable` (sealed with a key that is gone).
	 */
	public static function state() {
		$sealed = get_option( self::OPTION, '' );
		if ( ! is_string( $sealed ) || '' === $sealed ) {
			return array(
				'state'  => 'none',
				'secret' => '',
			);
		}
		$plain = self::open( $sealed );
		return null === $plain
			? array(
				'state'  => 'unreadable',
				'secret' => '',
			)
			: array(
				'state'  => 'ok',
				'secret' => $plain,
			);
	}

	/**
	 * The secret, '' when there is none or it cannot be read.
	 *
	 * @return string
	 */
	public static function get() {
		return self::state()['secret'];
	}

	/**
	 * Moves a plaintext `secret` out of a settings array (as versions up to 0.1 stored it, or as
	 * code that writes the option directly gives it) into the sealed option.
	 *
	 * @param array $values Settings values.
	 * @return array|null The values without `secret` and with `secret_id`; null when there was
	 *                    nothing to move.
	 */
	public static function migrate( array $values ) {
		if ( ! array_key_exists( 'secret', $values ) ) {
			return null;
		}
		$secret = (string) $values['secret'];
		unset( $values['secret'] );
		if ( '' !== $secret ) {
			$values['secret_id'] = self::set( $secret );
		}
		return $values;
	}

	/**
	 * Text shown where the sealed secret cannot be opened.
	 *
	 * @return string
	 */
	public static function unreadable_message() {
		return __( 'WooSync: the signing secret was sealed with a key that is gone (the WordPress salts AUTH_KEY/SECURE_AUTH_KEY or WOOSYNC_KEY changed), so it cannot be read. Enter or generate a new secret under Settings → WooSync and give it to your CRM.', 'woosync' );
	}
}
