<?php
/**
 * What the woosync PHP extension offers in this process.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Thin checks around the extension, so the rest of the plugin never calls a missing function.
 */
class Extension {

	/**
	 * Whether the extension is loaded (the core functions exist).
	 *
	 * @return bool
	 */
	public static function loaded() {
		return function_exists( 'woosync_dispatch' ) && function_exists( 'woosync_status' );
	}

	/**
	 * Whether the extension offers the named function (newer functions may be missing in older builds).
	 *
	 * @param string $function_name Function name such as `woosync_endpoint_save`.
	 * @return bool
	 */
	public static function has( $function_name ) {
		return function_exists( $function_name );
	}

	/**
	 * Version reported by the extension, or '' when it is not loaded.
	 *
	 * @return string
	 */
	public static function version() {
		$version = phpversion( 'woosync' );
		return false === $version ? '' : (string) $version;
	}

	/**
	 * Status of the outbox, or null when the extension is missing or the outbox cannot be read.
	 *
	 * @param string|null $error Set to the error message when the status cannot be read.
	 * @return array|null
	 */
	public static function status( &$error = null ) {
		if ( ! self::loaded() ) {
			$error = __( 'The woosync PHP extension is not loaded.', 'woosync' );
			return null;
		}
		try {
			return woosync_status();
		} catch ( \Throwable $e ) {
			$error = $e->getMessage();
			return null;
		}
	}

	/**
	 * The status row of one endpoint, or null.
	 *
	 * @param array  $status Result of woosync_status().
	 * @param string $name   Endpoint name.
	 * @return array|null
	 */
	public static function endpoint( array $status, $name ) {
		foreach ( (array) ( $status['endpoints'] ?? array() ) as $endpoint ) {
			if ( is_array( $endpoint ) && ( $endpoint['name'] ?? '' ) === $name ) {
				return $endpoint;
			}
		}
		return null;
	}

	/**
	 * An event's payload as PHP data: woosync_event() returns it as the JSON text of the
	 * envelope's `data` (exact bytes), which is decoded here.
	 *
	 * @param array $event Result of woosync_event().
	 * @return mixed
	 */
	public static function payload( array $event ) {
		$payload = $event['payload'] ?? null;
		if ( is_string( $payload ) ) {
			$decoded = json_decode( $payload, true );
			return JSON_ERROR_NONE === json_last_error() ? $decoded : $payload;
		}
		return $payload;
	}

	/**
	 * Attempts logged for each endpoint of an event (from the event's attempt list, so a delivery
	 * that was retried counts every attempt made, not only those since the retry).
	 *
	 * @param array $event Result of woosync_event().
	 * @return array<string,int> Endpoint name => attempts.
	 */
	public static function logged_attempts( array $event ) {
		$counts = array();
		foreach ( (array) ( $event['attempts'] ?? array() ) as $attempt ) {
			$name            = (string) ( $attempt['endpoint'] ?? '' );
			$counts[ $name ] = ( $counts[ $name ] ?? 0 ) + 1;
		}
		return $counts;
	}
}
