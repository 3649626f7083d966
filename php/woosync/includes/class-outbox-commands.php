<?php
/**
 * `wp woosync migrate`, `wp woosync serve`, `wp woosync metrics`, `wp woosync metrics-token`.
 *
 * @package Woosync
 */

namespace Woosync;

use WP_CLI;
use WP_CLI\Utils;

defined( 'ABSPATH' ) || exit;

/**
 * Commands that move, serve and measure the outbox (registered one by one from register()).
 */
class Outbox_Commands {

	/**
	 * Seconds between two `wp woosync serve` report lines.
	 */
	const SERVE_REPORT_EVERY = 60;

	/**
	 * Registers the subcommands.
	 */
	public static function register() {
		$self = new self();
		WP_CLI::add_command( 'woosync migrate', array( $self, 'migrate' ) );
		WP_CLI::add_command( 'woosync serve', array( $self, 'serve' ) );
		WP_CLI::add_command( 'woosync metrics', array( $self, 'metrics' ) );
		WP_CLI::add_command( 'woosync metrics-token', array( $self, 'metrics_token' ) );
	}

	/**
	 * Moves the outbox in use to another one: pending and dead events (same ids and sequence
	 * numbers), the endpoints and the per-key counters.
	 *
	 * Per-key order holds across the move: from the first batch on, new events are stored in the
	 * target, which sends nothing until everything older has arrived. An interrupted move
	 * continues where it stopped when run again. Delivered history stays in the old outbox.
	 *
	 * `--to=wordpress` is the WordPress database (from wp-config.php) and `--to=file` the plugin's
	 * SQLite file: moving there also switches the "Store the outbox in the WordPress database"
	 * setting. For any other target, point woosync.database at it afterwards (on every server).
	 *
	 * ## OPTIONS
	 *
	 * --to=<url|path>
	 * : The target: `wordpress`, `file`, a SQLite path, or mysql://USER:PASSWORD@HOST[:PORT]/DBNAME[?prefix=wp_].
	 *
	 * [--batch-size=<n>]
	 * : Events moved per batch (1 to 100000).
	 * ---
	 * default: 1000
	 * ---
	 *
	 * ## EXAMPLES
	 *
	 *     # Into the WordPress database (and switch the plugin's setting)
	 *     $ wp woosync migrate --to=wordpress
	 *
	 *     # Into another MariaDB (the password is never printed)
	 *     $ wp woosync migrate --to='mysql://shop:s3cret@db.internal/shop?prefix=wp_'
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function migrate( $args, $assoc_args ) {
		unset( $args );
		self::require_function( 'woosync_migrate' );
		$to    = trim( (string) Utils\get_flag_value( $assoc_args, 'to', '' ) );
		$batch = (string) Utils\get_flag_value( $assoc_args, 'batch-size', '1000' );
		if ( ! ctype_digit( $batch ) || (int) $batch < 1 || (int) $batch > 100000 ) {
			WP_CLI::error( '--batch-size must be a whole number from 1 to 100000.' );
		}
		$switch = null; // The setting to switch to when done (null: none).
		if ( 'wordpress' === $to ) {
			$to     = Wpdb_Outbox::url();
			$switch = true;
			if ( '' === $to ) {
				WP_CLI::error( 'wp-config.php does not define DB_HOST, DB_USER and DB_NAME.' );
			}
		} elseif ( 'file' === $to ) {
			$to     = Wpdb_Outbox::sqlite_path();
			$switch = false;
			if ( '' === $to ) {
				WP_CLI::error( 'No writable place for the outbox file was found.' );
			}
		} elseif ( '' === $to ) {
			WP_CLI::error( 'Give the target: --to=wordpress, --to=file, a SQLite path or a mysql:// URL.' );
		} elseif ( ! Outbox_Location::is_url( $to ) && '/' !== $to[0] ) {
			WP_CLI::error( sprintf( 'The target %s is neither a mysql:// URL nor an absolute path.', Wpdb_Outbox::mask( $to ) ) );
		}
		$from = Outbox_Location::current_raw();
		if ( $from === $to ) {
			WP_CLI::error( sprintf( '%s already is the outbox in use.', Wpdb_Outbox::mask( $to ) ) );
		}
		WP_CLI::log( sprintf( 'Moving the outbox %s to %s.', Wpdb_Outbox::mask( $from ), Wpdb_Outbox::mask( $to ) ) );

		$bar      = null;
		$moved    = 0;
		$copied   = array(
			'endpoints' => 0,
			'keys'      => 0,
		);
		$last     = null;
		$stuck_at = microtime( true );
		try {
			while ( true ) {
				$last   = woosync_migrate( $to, array( 'limit' => (int) $batch ) );
				$moved += (int) $last['moved'];
				foreach ( $copied as $k => $n ) {
					$copied[ $k ] = $n + (int) ( $last[ $k ] ?? 0 );
				}
				if ( null === $bar && ! $last['done'] ) {
					$bar = Utils\make_progress_bar( 'Moving events', $moved + (int) $last['remaining'] );
				}
				if ( $bar && (int) $last['moved'] > 0 ) {
					$bar->tick( (int) $last['moved'] );
				}
				if ( $last['done'] ) {
					break;
				}
				if ( (int) $last['moved'] > 0 ) {
					$stuck_at = microtime( true );
				} elseif ( microtime( true ) - $stuck_at > 120 ) {
					WP_CLI::error( sprintf( 'No progress for 2 minutes: %d events remain (attempts in flight that do not finish?). Run the command again to continue.', (int) $last['remaining'] ) );
				} else {
					usleep( 200000 ); // Only attempts in flight remain: they move once finished.
				}
			}
		} catch ( \Throwable $e ) {
			if ( $bar ) {
				$bar->finish();
			}
			WP_CLI::error( sprintf( 'The move stopped after %d events: %s Run the command again to continue where it stopped.', $moved, Wpdb_Outbox::mask( $e->getMessage() ) ) );
		}
		if ( $bar ) {
			$bar->finish();
		}
		WP_CLI::log( sprintf( 'Moved %d events, %d endpoints and %d per-key counters.', $moved, $copied['endpoints'], $copied['keys'] ) );
		if ( null !== $switch && ! Wpdb_Outbox::ini_decides() ) {
			Wpdb_Outbox::set_enabled( $switch );
			WP_CLI::success( $switch ? 'The outbox now is in the WordPress database ("Store the outbox in the WordPress database" is on).' : 'The outbox now is the file ' . $to . ' ("Store the outbox in the WordPress database" is off).' );
			return;
		}
		WP_CLI::success( sprintf( 'Moved to %s. Now set woosync.database to it in php.ini or the php-fpm pool (on every web server) and reload PHP; until then new events keep going there.', Wpdb_Outbox::mask( $to ) ) );
	}

	/**
	 * Runs this site's sender in this process: delivers the outbox whether or not the site gets
	 * traffic, taking over from (and handing over to) senders in php-fpm workers.
	 *
	 * Prints a line every minute: events delivered, attempts failed, events pending. SIGTERM or
	 * SIGINT (Ctrl-C) stops it within woosync.shutdown_grace, with exit code 0. Used by the
	 * `woosync-sender@.service` unit.
	 *
	 * ## OPTIONS
	 *
	 * [--seconds=<n>]
	 * : Stop after this many seconds (default: run until stopped).
	 *
	 * ## EXAMPLES
	 *
	 *     $ sudo -u www-data wp woosync serve
	 *     $ wp woosync serve --seconds=300
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function serve( $args, $assoc_args ) {
		unset( $args );
		self::require_function( 'woosync_serve' );
		$seconds = INF;
		if ( isset( $assoc_args['seconds'] ) ) {
			$value = (string) $assoc_args['seconds'];
			if ( ! is_numeric( $value ) || (float) $value < 0 || ! is_finite( (float) $value ) ) {
				WP_CLI::error( '--seconds must be a number of seconds, 0 or more.' );
			}
			$seconds = (float) $value;
		}
		$stop     = false;
		$restore  = array();
		$handlers = function_exists( 'pcntl_signal' ) && function_exists( 'pcntl_signal_get_handler' );
		if ( $handlers ) {
			// Between two woosync_serve() calls (while reporting) the signal only sets the flag;
			// during a call woosync_serve() stops itself and passes the signal on to this handler.
			foreach ( array( SIGTERM, SIGINT ) as $signal ) {
				$restore[ $signal ] = pcntl_signal_get_handler( $signal );
				pcntl_signal(
					$signal,
					function () use ( &$stop ) {
						$stop = true;
					}
				);
			}
		}
		try {
			WP_CLI::log( sprintf( 'Serving the outbox %s%s (SIGTERM or Ctrl-C stops).', Outbox_Location::current(), is_finite( $seconds ) ? sprintf( ' for %s s', $seconds ) : '' ) );
			/**
			 * Seconds between two `wp woosync serve` report lines (default 60).
			 *
			 * @param float $seconds Interval.
			 */
			$every  = max( 1.0, (float) apply_filters( 'woosync_serve_report_every', (float) self::SERVE_REPORT_EVERY ) );
			$start  = microtime( true );
			$before = self::counters();
			do {
				$chunk = min( $every, max( 0.0, $seconds - ( microtime( true ) - $start ) ) );
				$t     = microtime( true );
				woosync_serve( $chunk );
				if ( $handlers ) {
					pcntl_signal_dispatch();
				}
				if ( microtime( true ) - $t < $chunk - 0.5 ) {
					$stop = true; // Returned before its time: stopped by a signal.
				}
				$now = self::counters();
				WP_CLI::log(
					sprintf(
						'%s delivered %d, failed %d, pending %d',
						gmdate( 'Y-m-d\TH:i:s\Z' ),
						max( 0, $now['delivered'] - $before['delivered'] ),
						max( 0, $now['failed'] - $before['failed'] ),
						$now['pending']
					)
				);
				$before = $now;
			} while ( ! $stop && microtime( true ) - $start < $seconds );
		} catch ( \Throwable $e ) {
			WP_CLI::error( Wpdb_Outbox::mask( $e->getMessage() ) );
		} finally {
			foreach ( $restore as $signal => $handler ) {
				pcntl_signal( $signal, $handler );
			}
		}
		WP_CLI::log( $stop ? 'Stopped by a signal.' : 'Time is up.' );
	}

	/**
	 * Delivered events, failed attempts (monotonic counters of the outbox) and pending events.
	 *
	 * @return array
	 */
	private static function counters() {
		$out = array(
			'delivered' => 0,
			'failed'    => 0,
			'pending'   => 0,
		);
		if ( ! function_exists( 'woosync_metrics' ) ) {
			return $out;
		}
		try {
			$text = woosync_metrics();
		} catch ( \Throwable $e ) {
			return $out;
		}
		foreach ( explode( "\n", $text ) as $line ) {
			if ( '' === $line || '#' === $line[0] ) {
				continue;
			}
			if ( ! preg_match( '/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/', $line, $m ) ) {
				continue;
			}
			$value = (float) $m[3];
			if ( 'woosync_delivered_total' === $m[1] ) {
				$out['delivered'] += (int) $value;
			} elseif ( 'woosync_attempts_total' === $m[1] && false === strpos( $m[2], 'outcome="success"' ) && false === strpos( $m[2], 'outcome="delivered"' ) ) {
				$out['failed'] += (int) $value;
			} elseif ( 'woosync_pending' === $m[1] ) {
				$out['pending'] += (int) $value;
			}
		}
		return $out;
	}

	/**
	 * Prints the outbox's metrics in the Prometheus text format (0.0.4).
	 *
	 * The same text is served at /wp-json/woosync/v1/metrics to a scraper holding the bearer
	 * token (see `wp woosync metrics-token`).
	 *
	 * ## EXAMPLES
	 *
	 *     $ wp woosync metrics
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function metrics( $args, $assoc_args ) {
		unset( $args, $assoc_args );
		self::require_function( 'woosync_metrics' );
		try {
			$text = woosync_metrics();
		} catch ( \Throwable $e ) {
			WP_CLI::error( Wpdb_Outbox::mask( $e->getMessage() ) );
			return;
		}
		echo $text; // phpcs:ignore WordPress.Security.EscapeOutput.OutputNotEscaped -- Plain text for a terminal or a pipe.
	}

	/**
	 * Manages the bearer token of /wp-json/woosync/v1/metrics (no token: the route is off).
	 *
	 * `generate` prints a new token once (only its hash is stored); `delete` turns the route off;
	 * `status` says whether a token is set.
	 *
	 * ## OPTIONS
	 *
	 * <action>
	 * : What to do.
	 * ---
	 * options:
	 *   - generate
	 *   - delete
	 *   - status
	 * ---
	 *
	 * ## EXAMPLES
	 *
	 *     $ wp woosync metrics-token generate
	 *
	 * @param array $args       Positional arguments.
	 * @param array $assoc_args Options.
	 */
	public function metrics_token( $args, $assoc_args ) {
		unset( $assoc_args );
		switch ( $args[0] ) {
			case 'generate':
				$token = Metrics_Endpoint::generate_token();
				WP_CLI::log( $token );
				WP_CLI::success( 'New metrics token (shown once; only its hash is kept). Scrape ' . rest_url( Metrics_Endpoint::NS . Metrics_Endpoint::ROUTE ) . ' with "Authorization: Bearer <token>".' );
				break;
			case 'delete':
				Metrics_Endpoint::delete_token();
				WP_CLI::success( 'The metrics token is deleted: the metrics route is off.' );
				break;
			default:
				WP_CLI::log( Metrics_Endpoint::has_token() ? 'A metrics token is set: ' . rest_url( Metrics_Endpoint::NS . Metrics_Endpoint::ROUTE ) . ' is on.' : 'No metrics token: the metrics route is off.' );
		}
	}

	/**
	 * Stops with an error when the extension (or one of its functions) is missing.
	 *
	 * @param string $function_name Function needed.
	 */
	private static function require_function( $function_name ) {
		if ( ! Extension::loaded() ) {
			WP_CLI::error( sprintf( 'The woosync PHP extension is not loaded in this PHP (%s). Add "extension=/path/to/libwoosync.so" to the php.ini that `php --ini` lists.', PHP_BINARY ) );
		}
		if ( ! Extension::has( $function_name ) ) {
			WP_CLI::error( sprintf( 'The woosync extension %s has no %s(): install a newer one.', Extension::version(), $function_name ) );
		}
	}
}
