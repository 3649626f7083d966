<?php
/**
 * Tools → Site Health: woosync's tests and its section of the Info tab.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Site Health tests (each with a text that says what to do) and debug information without
 * secrets: the extension and its compatibility, the outbox, the key, every endpoint, dead events,
 * the oldest pending event, and whether a sender holds the outbox.
 */
class Site_Health {

	/**
	 * Functions the plugin calls: an extension missing one is not compatible.
	 */
	const REQUIRED = array( 'woosync_dispatch', 'woosync_flush', 'woosync_status', 'woosync_events', 'woosync_event', 'woosync_retry', 'woosync_retry_dead', 'woosync_endpoints', 'woosync_endpoint_save', 'woosync_endpoint_delete', 'woosync_purge', 'woosync_erase' );

	/**
	 * Functions of newer features (serve, metrics, migrate): missing ones are reported, not fatal.
	 */
	const OPTIONAL = array( 'woosync_serve', 'woosync_metrics', 'woosync_migrate' );

	/**
	 * Oldest pending age (seconds) that is worth a recommendation, and the one that is critical.
	 */
	const PENDING_RECOMMENDED = 900;
	const PENDING_CRITICAL    = 3600;

	/**
	 * Status read once per request (null: not read yet; false: could not be read).
	 *
	 * @var array|false|null
	 */
	private static $status = null;

	/**
	 * Error of the last status read.
	 *
	 * @var string
	 */
	private static $error = '';

	/**
	 * Hooks.
	 */
	public static function register() {
		add_filter( 'site_status_tests', array( __CLASS__, 'tests' ) );
		add_filter( 'debug_information', array( __CLASS__, 'debug_information' ) );
	}

	/**
	 * Adds the tests (direct: they read the local outbox, which is quick).
	 *
	 * @param array $tests Tests.
	 * @return array
	 */
	public static function tests( $tests ) {
		$ours = array(
			'woosync_extension' => __( 'WooSync extension', 'woosync' ),
			'woosync_outbox'    => __( 'WooSync outbox', 'woosync' ),
			'woosync_key'       => __( 'WooSync encryption key', 'woosync' ),
			'woosync_endpoints' => __( 'WooSync endpoints', 'woosync' ),
			'woosync_pending'   => __( 'WooSync pending events', 'woosync' ),
			'woosync_sender'    => __( 'WooSync sender', 'woosync' ),
		);
		foreach ( $ours as $id => $label ) {
			$tests['direct'][ $id ] = array(
				'label' => $label,
				'test'  => array( __CLASS__, 'test_' . substr( $id, 8 ) ),
			);
		}
		return $tests;
	}

	/**
	 * Forgets the status read in this request (for tests that change the outbox in between).
	 */
	public static function reset() {
		self::$status = null;
		self::$error  = '';
	}

	/**
	 * The outbox status, read once per request.
	 *
	 * @return array|null
	 */
	private static function status() {
		if ( null === self::$status ) {
			$error        = '';
			$status       = Extension::status( $error );
			self::$status = is_array( $status ) ? $status : false;
			self::$error  = Wpdb_Outbox::mask( (string) $error );
		}
		return false === self::$status ? null : self::$status;
	}

	/**
	 * One result in Site Health's format.
	 *
	 * @param string $test        Test id.
	 * @param string $status      good, recommended or critical.
	 * @param string $label       Headline.
	 * @param string $description HTML (already escaped).
	 * @param string $actions     HTML (already escaped).
	 * @return array
	 */
	private static function result( $test, $status, $label, $description, $actions = '' ) {
		return array(
			'label'       => $label,
			'status'      => $status,
			'badge'       => array(
				'label' => __( 'WooSync', 'woosync' ),
				'color' => 'good' === $status ? 'blue' : ( 'critical' === $status ? 'red' : 'orange' ),
			),
			'description' => $description,
			'actions'     => $actions,
			'test'        => $test,
		);
	}

	/**
	 * Paragraph helper.
	 *
	 * @param string $text Plain text.
	 * @return string
	 */
	private static function p( $text ) {
		return '<p>' . esc_html( $text ) . '</p>';
	}

	/**
	 * Link to a page of the plugin.
	 *
	 * @param string $url  URL.
	 * @param string $text Text.
	 * @return string
	 */
	private static function link( $url, $text ) {
		return '<p><a href="' . esc_url( $url ) . '">' . esc_html( $text ) . '</a></p>';
	}

	/**
	 * The extension is loaded and compatible: the same major.minor version as the plugin and
	 * every function the plugin calls.
	 *
	 * @return array
	 */
	public static function test_extension() {
		$test = 'woosync_extension';
		if ( ! Extension::loaded() ) {
			return self::result(
				$test,
				'critical',
				__( 'The woosync PHP extension is not loaded', 'woosync' ),
				self::p( __( 'Changes are kept in a small fallback table and are not sent to the CRM until the extension is loaded.', 'woosync' ) )
				. self::p( __( 'Install the woosync package (or run `make install`) and reload PHP (php-fpm and the CLI), or add extension=libwoosync.so to the php.ini that `php --ini` lists.', 'woosync' ) )
			);
		}
		$version = Extension::version();
		$compat  = self::compatible( $version, WOOSYNC_PLUGIN_VERSION );
		$missing = array_values( array_filter( self::REQUIRED, fn( $f ) => ! Extension::has( $f ) ) );
		$what    = sprintf(
			/* translators: 1: plugin version, 2: major.minor */
			__( 'Compatible means: the extension has the same major.minor version as the plugin (%2$s.x for plugin %1$s) and every function the plugin calls.', 'woosync' ),
			WOOSYNC_PLUGIN_VERSION,
			implode( '.', array_slice( explode( '.', WOOSYNC_PLUGIN_VERSION ), 0, 2 ) )
		);
		if ( ! $compat || $missing ) {
			$why = $missing ? sprintf(
				/* translators: %s: function names */
				__( 'Missing functions: %s.', 'woosync' ),
				implode( ', ', $missing )
			) : '';
			return self::result(
				$test,
				'critical',
				/* translators: 1: extension version, 2: plugin version */
				sprintf( __( 'The woosync extension %1$s does not match the plugin %2$s', 'woosync' ), $version, WOOSYNC_PLUGIN_VERSION ),
				self::p( $what ) . self::p( $why ) . self::p( __( 'Install the extension and the plugin from the same release (the Debian package ships both).', 'woosync' ) )
			);
		}
		$optional = array_values( array_filter( self::OPTIONAL, fn( $f ) => ! Extension::has( $f ) ) );
		if ( $optional ) {
			return self::result(
				$test,
				'recommended',
				/* translators: %s: extension version */
				sprintf( __( 'The woosync extension %s lacks newer features', 'woosync' ), $version ),
				self::p( $what ) . self::p(
					sprintf(
						/* translators: %s: function names */
						__( 'Missing: %s (the sender service, metrics or moving the outbox). Update the extension.', 'woosync' ),
						implode( ', ', $optional )
					)
				)
			);
		}
		return self::result(
			$test,
			'good',
			/* translators: %s: extension version */
			sprintf( __( 'The woosync extension %s is loaded and compatible', 'woosync' ), $version ),
			self::p( $what )
		);
	}

	/**
	 * Whether two versions share major.minor.
	 *
	 * @param string $extension Extension version.
	 * @param string $plugin    Plugin version.
	 * @return bool
	 */
	public static function compatible( $extension, $plugin ) {
		$a = array_slice( explode( '.', (string) $extension ), 0, 2 );
		$b = array_slice( explode( '.', (string) $plugin ), 0, 2 );
		return 2 === count( $a ) && $a === $b;
	}

	/**
	 * The outbox can be opened and written by this user (the web server's, when Site Health runs
	 * in the browser).
	 *
	 * @return array
	 */
	public static function test_outbox() {
		$test = 'woosync_outbox';
		if ( ! Extension::loaded() ) {
			return self::result( $test, 'critical', __( 'The WooSync outbox cannot be used without the extension', 'woosync' ), self::p( __( 'See the test of the woosync extension.', 'woosync' ) ) );
		}
		$outbox = Outbox_Location::current_raw();
		$shown  = Wpdb_Outbox::mask( $outbox );
		$user   = function_exists( 'posix_geteuid' ) && function_exists( 'posix_getpwuid' ) ? (string) ( posix_getpwuid( posix_geteuid() )['name'] ?? posix_geteuid() ) : get_current_user();
		$status = self::status();
		if ( null === $status ) {
			return self::result(
				$test,
				'critical',
				__( 'The WooSync outbox cannot be opened', 'woosync' ),
				/* translators: 1: outbox, 2: error */
				self::p( sprintf( __( 'The outbox %1$s cannot be used: %2$s', 'woosync' ), $shown, self::$error ) )
				. self::p( Outbox_Location::is_url( $outbox ) ? __( 'Check that the database server is up and that the user in the URL may create tables in that database.', 'woosync' ) : __( 'Make the file and its directory belong to the web server\'s user (and run WP-CLI as that user), or set woosync.database in php.ini to a place it can write.', 'woosync' ) )
			);
		}
		if ( ! Outbox_Location::is_url( $outbox ) && '' !== $outbox ) {
			$problems = array();
			foreach ( array( $outbox, dirname( $outbox ) ) as $path ) {
				if ( file_exists( $path ) && ! is_writable( $path ) ) { // phpcs:ignore WordPress.WP.AlternativeFunctions.file_system_operations_is_writable
					$owner      = function_exists( 'posix_getpwuid' ) ? (string) ( posix_getpwuid( (int) fileowner( $path ) )['name'] ?? fileowner( $path ) ) : (string) fileowner( $path );
					$problems[] = sprintf( '%s (owner: %s)', $path, $owner );
				}
			}
			if ( $problems ) {
				return self::result(
					$test,
					'critical',
					/* translators: %s: user name */
					sprintf( __( 'The WooSync outbox is not writable by %s', 'woosync' ), $user ),
					/* translators: %s: paths */
					self::p( sprintf( __( 'Not writable: %s. Events cannot be stored, so changes are kept in the fallback table.', 'woosync' ), implode( ', ', $problems ) ) )
					/* translators: %s: user name */
					. self::p( sprintf( __( 'Give the file and its directory to %s (chown), and run WP-CLI as that user.', 'woosync' ), $user ) )
				);
			}
		}
		return self::result(
			$test,
			'good',
			/* translators: %s: user name */
			sprintf( __( 'The WooSync outbox is writable by %s', 'woosync' ), $user ),
			/* translators: %s: outbox */
			self::p( sprintf( __( 'Outbox: %s', 'woosync' ), $shown ) )
		);
	}

	/**
	 * Endpoint secrets are encrypted at rest (woosync.key is set).
	 *
	 * @return array
	 */
	public static function test_key() {
		$test = 'woosync_key';
		if ( ! Extension::loaded() ) {
			return self::result( $test, 'recommended', __( 'WooSync encryption key: extension not loaded', 'woosync' ), self::p( __( 'See the test of the woosync extension.', 'woosync' ) ) );
		}
		$key = (string) ini_get( 'woosync.key' );
		if ( '' === $key ) {
			return self::result(
				$test,
				'recommended',
				__( 'WooSync stores endpoint secrets unencrypted', 'woosync' ),
				self::p( __( 'No encryption key is configured: the signing secrets are stored in the outbox as they are.', 'woosync' ) )
				. self::p( __( 'Define WOOSYNC_KEY (64 hex characters, e.g. from `openssl rand -hex 32`) in wp-config.php, or set woosync.key in php.ini.', 'woosync' ) )
			);
		}
		if ( defined( 'WOOSYNC_KEY' ) && '' !== (string) WOOSYNC_KEY ) {
			$source = __( 'the WOOSYNC_KEY constant', 'woosync' );
		} elseif ( '' !== (string) get_cfg_var( 'woosync.key' ) ) {
			$source = __( 'php.ini', 'woosync' );
		} else {
			$source = __( 'the site\'s secret keys (salts) in wp-config.php: changing them makes stored secrets unreadable, so save the endpoint again after a change (or define WOOSYNC_KEY)', 'woosync' );
		}
		return self::result(
			$test,
			'good',
			__( 'WooSync encrypts endpoint secrets', 'woosync' ),
			/* translators: %s: where the key comes from */
			self::p( sprintf( __( 'The encryption key comes from %s.', 'woosync' ), $source ) )
		);
	}

	/**
	 * Every endpoint is healthy; a paused (breaker open), refused or disabled one is critical,
	 * a failing one and dead events are recommendations.
	 *
	 * @return array
	 */
	public static function test_endpoints() {
		$test   = 'woosync_endpoints';
		$status = self::status();
		if ( null === $status ) {
			return self::result( $test, 'recommended', __( 'WooSync endpoints cannot be checked', 'woosync' ), self::p( self::$error ) );
		}
		$log       = admin_url( 'admin.php?page=woosync-log' );
		$settings  = admin_url( 'options-general.php?page=' . Settings::PAGE );
		$critical  = array();
		$recommend = array();
		$good      = array();
		foreach ( (array) ( $status['endpoints'] ?? array() ) as $e ) {
			$name   = (string) ( $e['name'] ?? '' );
			$health = (string) ( $e['health'] ?? '' );
			$error  = (string) ( $e['last_error'] ?? '' );
			switch ( $health ) {
				case 'paused':
					/* translators: 1: endpoint, 2: time, 3: error */
					$critical[] = sprintf( __( '%1$s: the CRM keeps failing, so deliveries are paused (circuit breaker open) until %2$s; events wait and are sent in order once it answers. Last error: %3$s. Check that the CRM is up and reachable from this server.', 'woosync' ), $name, (string) ( $e['breaker_open_until'] ?? '' ), $error );
					break;
				case 'refused':
					/* translators: 1: endpoint, 2: reason */
					$critical[] = sprintf( __( '%1$s: the destination is refused by the security policy: %2$s', 'woosync' ), $name, (string) ( $e['refused_reason'] ?? '' ) );
					break;
				case 'disabled':
					/* translators: 1: endpoint, 2: reason */
					$critical[] = sprintf( __( '%1$s: disabled by WooSync: %2$s. Fix the cause, then save the endpoint again to turn it back on.', 'woosync' ), $name, (string) ( $e['disabled_reason'] ?? '' ) );
					break;
				case 'failing':
					/* translators: 1: endpoint, 2: failures, 3: error */
					$recommend[] = sprintf( __( '%1$s: the last %2$d attempts failed (%3$s); retries continue.', 'woosync' ), $name, (int) ( $e['consecutive_failures'] ?? 0 ), $error );
					break;
				case 'unconfigured':
					/* translators: %s: endpoint */
					$recommend[] = sprintf( __( '%s: no URL set.', 'woosync' ), $name );
					break;
				case 'off':
					/* translators: %s: endpoint */
					$good[] = sprintf( __( '%s: turned off.', 'woosync' ), $name );
					break;
				default:
					/* translators: %s: endpoint */
					$good[] = sprintf( __( '%s: healthy.', 'woosync' ), $name );
			}
		}
		$dead = (int) ( $status['dead'] ?? 0 );
		if ( $dead > 0 ) {
			/* translators: %d: dead events */
			$recommend[] = sprintf( _n( '%d event could not be delivered (dead): fix the cause and retry it from the log or with `wp woosync retry --dead`.', '%d events could not be delivered (dead): fix the cause and retry them from the log or with `wp woosync retry --dead`.', $dead, 'woosync' ), $dead );
		}
		if ( ! $critical && ! $recommend && ! $good ) {
			return self::result( $test, 'recommended', __( 'WooSync has no CRM endpoint', 'woosync' ), self::p( __( 'Nothing is sent until a CRM URL is set.', 'woosync' ) ), self::link( $settings, __( 'Settings → WooSync', 'woosync' ) ) );
		}
		$lines = implode( '', array_map( array( __CLASS__, 'p' ), array_merge( $critical, $recommend, $good ) ) );
		if ( $critical ) {
			return self::result( $test, 'critical', __( 'A WooSync endpoint is not receiving events', 'woosync' ), $lines, self::link( $log, __( 'WooSync log', 'woosync' ) ) );
		}
		if ( $recommend ) {
			return self::result( $test, 'recommended', __( 'WooSync deliveries need attention', 'woosync' ), $lines, self::link( $log, __( 'WooSync log', 'woosync' ) ) );
		}
		return self::result( $test, 'good', __( 'WooSync endpoints are healthy', 'woosync' ), $lines );
	}

	/**
	 * How long the oldest pending event has waited.
	 *
	 * @return array
	 */
	public static function test_pending() {
		$test   = 'woosync_pending';
		$status = self::status();
		if ( null === $status ) {
			return self::result( $test, 'recommended', __( 'WooSync pending events cannot be checked', 'woosync' ), self::p( self::$error ) );
		}
		$age     = $status['oldest_pending_age'] ?? null;
		$pending = (int) ( $status['pending'] ?? 0 );
		if ( null === $age || $pending <= 0 ) {
			return self::result( $test, 'good', __( 'No WooSync event is waiting', 'woosync' ), self::p( __( 'Every event was delivered or given up.', 'woosync' ) ) );
		}
		$minutes = (int) floor( (float) $age / 60 );
		/* translators: 1: pending events, 2: minutes */
		$text = sprintf( __( '%1$d events are waiting; the oldest for %2$d minutes.', 'woosync' ), $pending, $minutes );
		if ( (float) $age < self::PENDING_RECOMMENDED ) {
			return self::result( $test, 'good', __( 'WooSync events are being delivered', 'woosync' ), self::p( $text ) );
		}
		return self::result(
			$test,
			(float) $age >= self::PENDING_CRITICAL ? 'critical' : 'recommended',
			__( 'WooSync events have been waiting a long time', 'woosync' ),
			self::p( $text ) . self::p( __( 'Look at the endpoints\' health above and at the sender: events wait while the CRM fails or while no sender runs.', 'woosync' ) ),
			self::link( admin_url( 'admin.php?page=woosync-log' ), __( 'WooSync log', 'woosync' ) )
		);
	}

	/**
	 * A sender holds the outbox (from its lease, not from the last success, which is old on a
	 * quiet site).
	 *
	 * @return array
	 */
	public static function test_sender() {
		$test   = 'woosync_sender';
		$status = self::status();
		if ( null === $status ) {
			return self::result( $test, 'recommended', __( 'The WooSync sender cannot be checked', 'woosync' ), self::p( self::$error ) );
		}
		$pid     = $status['sender_pid'] ?? null;
		$pending = (int) ( $status['pending'] ?? 0 );
		$service = self::p( __( 'On a site with little traffic, run the sender as a service: `systemctl enable --now "woosync-sender@$(systemd-escape --path ABSPATH).service"` (Debian package), or `wp woosync serve` under any process supervisor.', 'woosync' ) );
		$service = str_replace( 'ABSPATH', untrailingslashit( ABSPATH ), $service );
		if ( null !== $pid && '' !== (string) $pid ) {
			return self::result(
				$test,
				'good',
				__( 'A WooSync sender is running', 'woosync' ),
				/* translators: 1: pid, 2: host */
				self::p( sprintf( __( 'The sender is process %1$s on %2$s.', 'woosync' ), (string) $pid, (string) ( $status['sender_host'] ?? '' ) ) )
			);
		}
		$worker_error = (string) ( $status['worker_error'] ?? '' );
		if ( $pending > 0 ) {
			return self::result(
				$test,
				'critical',
				__( 'No WooSync sender is running while events wait', 'woosync' ),
				/* translators: %d: pending events */
				self::p( sprintf( __( '%d events are waiting and no process is sending them.', 'woosync' ), $pending ) )
				/* translators: %s: error */
				. ( '' !== $worker_error ? self::p( sprintf( __( 'Last sender error: %s', 'woosync' ), Wpdb_Outbox::mask( $worker_error ) ) ) : '' )
				. $service
			);
		}
		return self::result(
			$test,
			'recommended',
			__( 'No WooSync sender is running right now', 'woosync' ),
			self::p( __( 'Nothing is waiting, so nothing is lost; the next request that dispatches starts a sender.', 'woosync' ) ) . $service
		);
	}

	/**
	 * Tools → Site Health → Info: a WooSync section (no secrets, the outbox URL's password masked
	 * and the field kept out of the copied report).
	 *
	 * @param array $info Sections.
	 * @return array
	 */
	public static function debug_information( $info ) {
		$fields = array(
			'plugin_version'    => array(
				'label' => __( 'Plugin version', 'woosync' ),
				'value' => WOOSYNC_PLUGIN_VERSION,
			),
			'extension_version' => array(
				'label' => __( 'Extension version', 'woosync' ),
				'value' => Extension::loaded() ? Extension::version() : __( 'not loaded', 'woosync' ),
			),
			'outbox'            => array(
				'label'   => __( 'Outbox', 'woosync' ),
				'value'   => Outbox_Location::current(),
				'private' => true,
			),
			'outbox_chosen_by'  => array(
				'label' => __( 'Outbox chosen by', 'woosync' ),
				'value' => Wpdb_Outbox::ini_decides() ? 'php.ini' : ( Wpdb_Outbox::enabled() ? __( 'the plugin: the WordPress database', 'woosync' ) : __( 'the plugin: a file', 'woosync' ) ),
			),
			'key'               => array(
				'label' => __( 'Encryption key', 'woosync' ),
				'value' => Extension::loaded() && '' !== (string) ini_get( 'woosync.key' ) ? __( 'set', 'woosync' ) : __( 'not set', 'woosync' ),
			),
			'metrics'           => array(
				'label' => __( 'Metrics route', 'woosync' ),
				'value' => Metrics_Endpoint::has_token() ? __( 'on (bearer token set)', 'woosync' ) : __( 'off', 'woosync' ),
			),
		);
		$status = self::status();
		if ( null !== $status ) {
			foreach ( array( 'pending', 'in_flight', 'delivered', 'dead', 'worker' ) as $k ) {
				$fields[ 'status_' . $k ] = array(
					'label' => $k,
					'value' => (string) ( $status[ $k ] ?? '' ),
				);
			}
			$fields['sender'] = array(
				'label' => __( 'Sender', 'woosync' ),
				'value' => null !== ( $status['sender_pid'] ?? null ) ? $status['sender_pid'] . '@' . ( $status['sender_host'] ?? '' ) : __( 'none', 'woosync' ),
			);
			foreach ( (array) ( $status['endpoints'] ?? array() ) as $e ) {
				$fields[ 'endpoint_' . $e['name'] ] = array(
					/* translators: %s: endpoint name */
					'label' => sprintf( __( 'Endpoint %s', 'woosync' ), $e['name'] ),
					'value' => sprintf( '%s (%s)', (string) ( $e['url'] ?? '' ), (string) ( $e['health'] ?? '' ) ),
				);
			}
		} else {
			$fields['error'] = array(
				'label' => __( 'Error', 'woosync' ),
				'value' => self::$error,
			);
		}
		foreach ( array( 'retry_delays', 'timeout', 'allow_networks', 'shutdown_grace', 'retention_days' ) as $k ) {
			if ( Extension::loaded() && false !== ini_get( 'woosync.' . $k ) ) {
				$fields[ 'ini_' . $k ] = array(
					'label' => 'woosync.' . $k,
					'value' => (string) ini_get( 'woosync.' . $k ),
				);
			}
		}
		$info['woosync'] = array(
			'label'  => __( 'WooSync', 'woosync' ),
			'fields' => $fields,
		);
		return $info;
	}
}
