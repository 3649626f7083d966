<?php
/**
 * "Store the outbox in the WordPress database": the outbox URL built from wp-config.php, the
 * setting, and the move of waiting events when it is switched.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * The outbox in WordPress's own MariaDB/MySQL database (for several web servers).
 *
 * The URL is `mysql://DB_USER:DB_PASSWORD@HOST[:PORT]/DB_NAME?prefix=<$wpdb->base_prefix>`, built
 * from wp-config.php on every request (never stored, so the password is not copied into an
 * option): every DB_HOST form WordPress accepts (`host`, `host:port`, `host:/socket`, `:/socket`,
 * `localhost` = the default socket as mysqli uses it, `[::1]:3306`), user and password
 * percent-encoded, TLS from MYSQL_CLIENT_FLAGS (and the CA from MYSQL_SSL_CA when defined).
 *
 * The setting is network-wide (a site option): the tables use the network's base prefix, one set
 * of tables per network. php.ini's (or the pool's) `woosync.database` wins over it.
 *
 * Switching moves what waits (pending and dead events, endpoints, per-key counters) with
 * woosync_migrate() from the outbox in use to the other one; the switch happens only once the
 * move is done, so nothing is stranded. A move too large for one web request continues with the
 * next press of the button or with `wp woosync migrate` (the extension keeps per-key order across
 * an interrupted move: new dispatches already land in the target).
 */
class Wpdb_Outbox {

	const OPTION = 'woosync_outbox_in_wpdb';
	const ACTION = 'woosync_outbox_storage';
	const NOTICE = 'woosync_storage_result_';

	/**
	 * Seconds a web request spends moving events before it stops and says how many remain.
	 */
	const WEB_BUDGET = 20;

	/**
	 * Hooks (admin only: the outbox URL itself is read by Outbox_Location on every request).
	 */
	public static function register() {
		add_action( 'woosync_settings_page_end', array( __CLASS__, 'render' ) );
		add_action( 'admin_post_' . self::ACTION, array( __CLASS__, 'handle' ) );
	}

	/**
	 * Whether the setting is on.
	 *
	 * @return bool
	 */
	public static function enabled() {
		return (bool) get_site_option( self::OPTION, false );
	}

	/**
	 * Turns the setting on or off (no move: see switch_to()).
	 *
	 * @param bool $on On.
	 */
	public static function set_enabled( $on ) {
		update_site_option( self::OPTION, $on ? 1 : 0 );
	}

	/**
	 * Whether php.ini (or the pool, or `php -d`) sets woosync.database: then it wins.
	 *
	 * @return bool
	 */
	public static function ini_decides() {
		if ( ! Extension::loaded() ) {
			return false;
		}
		$ini = (string) ini_get( 'woosync.database' );
		return '' !== $ini && ! Outbox_Location::chosen_by_plugin();
	}

	/**
	 * The outbox URL of WordPress's database, from wp-config.php's constants.
	 *
	 * @return string '' when the constants are missing.
	 */
	public static function url() {
		global $wpdb;
		if ( ! defined( 'DB_HOST' ) || ! defined( 'DB_USER' ) || ! defined( 'DB_NAME' ) ) {
			return '';
		}
		$prefix = isset( $wpdb->base_prefix ) ? (string) $wpdb->base_prefix : 'wp_';
		$url    = self::build_url(
			(string) DB_HOST,
			(string) DB_USER,
			defined( 'DB_PASSWORD' ) ? (string) DB_PASSWORD : '',
			(string) DB_NAME,
			$prefix,
			defined( 'MYSQL_CLIENT_FLAGS' ) ? (int) MYSQL_CLIENT_FLAGS : 0,
			defined( 'MYSQL_SSL_CA' ) ? (string) MYSQL_SSL_CA : ''
		);
		/**
		 * The outbox URL used when "Store the outbox in the WordPress database" is on (for example
		 * to reach the primary directly when DB_HOST names a proxy that splits reads).
		 *
		 * @param string $url mysql:// URL built from wp-config.php.
		 */
		return (string) apply_filters( 'woosync_wpdb_outbox_url', $url );
	}

	/**
	 * Builds a mysql:// outbox URL from wp-config.php's values.
	 *
	 * @param string $db_host  DB_HOST in any form WordPress accepts.
	 * @param string $user     DB_USER.
	 * @param string $password DB_PASSWORD.
	 * @param string $name     DB_NAME.
	 * @param string $prefix   Table prefix (the network's base prefix).
	 * @param int    $flags    MYSQL_CLIENT_FLAGS.
	 * @param string $ssl_ca   CA file for TLS ('' = the system's roots).
	 * @return string
	 */
	public static function build_url( $db_host, $user, $password, $name, $prefix, $flags = 0, $ssl_ca = '' ) {
		list( $host, $port, $socket ) = self::parse_host( $db_host );
		$query                        = array( 'prefix=' . rawurlencode( $prefix ) );
		if ( '' !== $socket ) {
			$where   = 'localhost';
			$query[] = 'socket=' . rawurlencode( $socket );
		} else {
			$where = false !== strpos( $host, ':' ) ? '[' . $host . ']' : rawurlencode( $host );
			if ( null !== $port ) {
				$where .= ':' . $port;
			}
		}
		$ssl = defined( 'MYSQLI_CLIENT_SSL' ) ? MYSQLI_CLIENT_SSL : 2048;
		if ( $flags & $ssl ) {
			$dont_verify = defined( 'MYSQLI_CLIENT_SSL_DONT_VERIFY_SERVER_CERT' ) ? MYSQLI_CLIENT_SSL_DONT_VERIFY_SERVER_CERT : 64;
			$query[]     = 'ssl-mode=' . ( ( $flags & $dont_verify ) ? 'REQUIRED' : 'VERIFY_IDENTITY' );
			if ( '' !== $ssl_ca ) {
				$query[] = 'ssl-ca=' . rawurlencode( $ssl_ca );
			}
		}
		return 'mysql://' . rawurlencode( $user ) . ':' . rawurlencode( $password ) . '@' . $where . '/'
			. rawurlencode( $name ) . '?' . implode( '&', $query );
	}

	/**
	 * DB_HOST as mysqli sees it: [host, port or null, socket or ''].
	 *
	 * `localhost` (with or without a port) means the default Unix socket, as for mysqli.
	 *
	 * @param string $db_host DB_HOST.
	 * @return array
	 */
	public static function parse_host( $db_host ) {
		$db_host = trim( $db_host );
		$host    = $db_host;
		$port    = null;
		$socket  = '';
		if ( preg_match( '#^\[([0-9a-fA-F:.]+)\](?::(\d+))?(?::(/.*))?$#', $db_host, $m ) ) {
			$host   = $m[1];
			$port   = isset( $m[2] ) && '' !== $m[2] ? (int) $m[2] : null;
			$socket = $m[3] ?? '';
		} elseif ( substr_count( $db_host, ':' ) > 1 && false === strpos( $db_host, '/' ) ) {
			$host = $db_host; // A bare IPv6 address.
		} else {
			$colon = strpos( $db_host, ':' );
			if ( false !== $colon ) {
				$host = substr( $db_host, 0, $colon );
				$rest = substr( $db_host, $colon + 1 );
				if ( '' !== $rest && '/' === $rest[0] ) {
					$socket = $rest;
				} elseif ( ctype_digit( $rest ) ) {
					$port = (int) $rest;
				} elseif ( preg_match( '#^(\d+):(/.+)$#', $rest, $m ) ) {
					$port   = (int) $m[1];
					$socket = $m[2];
				}
			}
		}
		if ( '' === $socket && ( '' === $host || 'localhost' === strtolower( $host ) ) ) {
			$socket = self::default_socket();
		}
		return array( $host, $port, $socket );
	}

	/**
	 * The Unix socket mysqli uses for `localhost`.
	 *
	 * @return string
	 */
	public static function default_socket() {
		foreach ( array( 'mysqli.default_socket', 'pdo_mysql.default_socket' ) as $setting ) {
			$value = (string) ini_get( $setting );
			if ( '' !== $value ) {
				return $value;
			}
		}
		return '/run/mysqld/mysqld.sock'; // Debian's and most distributions' default.
	}

	/**
	 * A URL (or path) for display: the password of a mysql:// URL masked, as the extension does.
	 *
	 * @param string $url URL or path.
	 * @return string
	 */
	public static function mask( $url ) {
		$url    = (string) $url;
		$scheme = strpos( $url, '://' );
		if ( false === $scheme ) {
			return $url;
		}
		$rest  = substr( $url, $scheme + 3 );
		$at    = strrpos( $rest, '@' );
		$colon = strpos( $rest, ':' );
		if ( false === $at || false === $colon || $colon > $at ) {
			return $url;
		}
		return substr( $url, 0, $scheme + 3 ) . substr( $rest, 0, $colon ) . ':****' . substr( $rest, $at );
	}

	/**
	 * The outbox the plugin would use with the setting off (a SQLite path).
	 *
	 * @return string
	 */
	public static function sqlite_path() {
		return Outbox_Location::resolve_file();
	}

	/**
	 * Moves the outbox in use to $to, one batch per woosync_migrate() call, until done or the
	 * time budget runs out.
	 *
	 * @param string        $to       Target path or URL.
	 * @param float         $budget   Seconds (INF = until done).
	 * @param int           $limit    Events per call.
	 * @param callable|null $progress Called with each call's result.
	 * @return array Last result of woosync_migrate() plus `total_moved`.
	 * @throws \Throwable From woosync_migrate().
	 */
	public static function move( $to, $budget = INF, $limit = 1000, $progress = null ) {
		$start = microtime( true );
		$total = 0;
		do {
			$result = woosync_migrate( $to, array( 'limit' => (int) $limit ) );
			$total += (int) ( $result['moved'] ?? 0 );
			if ( $progress ) {
				call_user_func( $progress, $result );
			}
			if ( ! empty( $result['done'] ) ) {
				break;
			}
			if ( 0 === (int) ( $result['moved'] ?? 0 ) ) {
				usleep( 100000 ); // Only attempts in flight remain: let them finish.
			}
		} while ( microtime( true ) - $start < $budget );
		$result['total_moved'] = $total;
		return $result;
	}

	/**
	 * Switches the setting, moving what waits from the outbox in use to the other one first.
	 *
	 * @param bool  $on     Target state.
	 * @param float $budget Seconds to spend moving.
	 * @param int   $limit  Events per woosync_migrate() call.
	 * @return array `ok` (bool), `done` (switched), `message`, `remaining`.
	 */
	public static function switch_to( $on, $budget = self::WEB_BUDGET, $limit = 1000 ) {
		if ( (bool) $on === self::enabled() ) {
			return array(
				'ok'        => true,
				'done'      => true,
				'remaining' => 0,
				'message'   => $on ? __( 'The outbox already is in the WordPress database.', 'woosync' ) : __( 'The outbox already is a file on this server.', 'woosync' ),
			);
		}
		if ( self::ini_decides() ) {
			return array(
				'ok'        => false,
				'done'      => false,
				'remaining' => 0,
				'message'   => sprintf(
					/* translators: %s: the outbox set in php.ini */
					__( 'php.ini sets woosync.database (%s), which wins over this setting: nothing was changed. Change woosync.database in php.ini (or the php-fpm pool) instead; `wp woosync migrate --to=…` moves the events.', 'woosync' ),
					self::mask( (string) ini_get( 'woosync.database' ) )
				),
			);
		}
		$to = $on ? self::url() : self::sqlite_path();
		if ( '' === $to ) {
			return array(
				'ok'        => false,
				'done'      => false,
				'remaining' => 0,
				'message'   => $on ? __( 'wp-config.php does not define DB_HOST, DB_USER and DB_NAME.', 'woosync' ) : __( 'No writable place for the outbox file was found.', 'woosync' ),
			);
		}
		try {
			$result = self::move( $to, $budget, $limit );
		} catch ( \Throwable $e ) {
			return array(
				'ok'        => false,
				'done'      => false,
				'remaining' => 0,
				'message'   => sprintf(
					/* translators: 1: target outbox, 2: error */
					__( 'The outbox could not be moved to %1$s: %2$s. Nothing was switched.', 'woosync' ),
					self::mask( $to ),
					self::mask( $e->getMessage() )
				),
			);
		}
		if ( empty( $result['done'] ) ) {
			return array(
				'ok'        => false,
				'done'      => false,
				'remaining' => (int) $result['remaining'],
				'message'   => sprintf(
					/* translators: 1: events moved, 2: events remaining, 3: target */
					__( 'Moved %1$d events; %2$d still to move to %3$s. New events already go there and keep their order. Press the button again, or run `wp woosync migrate --to=wordpress`, to finish the switch.', 'woosync' ),
					(int) $result['total_moved'],
					(int) $result['remaining'],
					self::mask( $to )
				),
			);
		}
		self::set_enabled( $on );
		Outbox_Location::configure();
		return array(
			'ok'        => true,
			'done'      => true,
			'remaining' => 0,
			'message'   => sprintf(
				/* translators: 1: events moved, 2: new outbox */
				__( 'Moved %1$d waiting events; the outbox now is %2$s.', 'woosync' ),
				(int) $result['total_moved'],
				self::mask( $to )
			),
		);
	}

	/**
	 * Settings → WooSync, below the settings: the outbox in use, the checkbox and the switch
	 * button (its own form posted to admin-post.php, so the move runs in its own request).
	 */
	public static function render() {
		echo '<h2>' . esc_html__( 'Outbox storage', 'woosync' ) . '</h2>';
		$user_id = get_current_user_id();
		$result  = get_transient( self::NOTICE . $user_id );
		if ( is_array( $result ) ) {
			delete_transient( self::NOTICE . $user_id );
			$class = ! empty( $result['ok'] ) ? 'notice-success' : 'notice-warning';
			echo '<div class="notice inline ' . esc_attr( $class ) . '" id="woosync-storage-result"><p>' . esc_html( (string) $result['message'] ) . '</p></div>';
		}
		echo '<p>' . esc_html__( 'With several web servers (or containers whose disks vanish on redeploy), keep the outbox in the WordPress database instead of a file on each server: one ordered stream and one sender for all servers. Switching moves the waiting events.', 'woosync' ) . '</p>';
		$in_use = Outbox_Location::current();
		if ( self::ini_decides() ) {
			echo '<p id="woosync-storage-ini"><strong>' . esc_html__( 'php.ini sets woosync.database, which wins over this setting:', 'woosync' ) . '</strong> <code>' . esc_html( self::mask( $in_use ) ) . '</code></p>';
			return;
		}
		echo '<p id="woosync-storage-current">' . esc_html__( 'Outbox in use:', 'woosync' ) . ' <code>' . esc_html( self::mask( $in_use ) ) . '</code></p>';
		if ( ! self::may_switch() ) {
			echo '<p>' . esc_html__( 'An administrator (a network administrator on multisite) chooses where the outbox is stored.', 'woosync' ) . '</p>';
			return;
		}
		echo '<form action="' . esc_url( admin_url( 'admin-post.php' ) ) . '" method="post" id="woosync-storage-form">';
		echo '<input type="hidden" name="action" value="' . esc_attr( self::ACTION ) . '" />';
		wp_nonce_field( self::ACTION );
		printf(
			'<label><input type="checkbox" name="in_wpdb" value="1" %1$s /> %2$s</label>',
			checked( self::enabled(), true, false ),
			esc_html__( 'Store the outbox in the WordPress database (for several web servers)', 'woosync' )
		);
		echo '<p class="description">' . esc_html__( 'Uses DB_HOST, DB_USER, DB_PASSWORD and DB_NAME from wp-config.php (tables named with the network\'s prefix and woosync_). The database must be the primary server (not a replica or a read/write split). MariaDB 10.6+ or MySQL 8.0+.', 'woosync' ) . '</p>';
		submit_button( __( 'Save storage and move waiting events', 'woosync' ), 'secondary', 'woosync_storage_submit', false );
		echo '</form>';
	}

	/**
	 * Whether the current user may move the outbox: administrators (`manage_options`; on multisite
	 * network administrators, as the setting is network-wide), not shop managers.
	 *
	 * @return bool
	 */
	public static function may_switch() {
		return is_multisite() ? is_super_admin() : current_user_can( 'manage_options' );
	}

	/**
	 * admin-post.php handler of the storage form.
	 */
	public static function handle() {
		if ( ! self::may_switch() ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to change where the outbox is stored.', 'woosync' ), 403 );
		}
		check_admin_referer( self::ACTION );
		$on     = ! empty( $_POST['in_wpdb'] );
		$result = self::switch_to( $on );
		set_transient( self::NOTICE . get_current_user_id(), $result, 10 * MINUTE_IN_SECONDS );
		wp_safe_redirect( admin_url( 'options-general.php?page=' . Settings::PAGE ) );
		exit;
	}
}
