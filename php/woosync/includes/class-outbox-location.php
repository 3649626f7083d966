<?php
/**
 * Where the outbox file lives.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Chooses the outbox path when php.ini leaves `woosync.database` empty and sets it with ini_set()
 * on every request and CLI run, so the web and `wp woosync` always use the same file.
 *
 * Order of preference:
 * 1. php.ini / the php-fpm pool (`woosync.database` not empty): left alone, except that a
 *    `{blog_id}` in it is replaced by the current site's id (one outbox per site of a network).
 * 1b. "Store the outbox in the WordPress database" (Wpdb_Outbox): a mysql:// URL built from
 *    wp-config.php, never stored in an option.
 * 2. The `WOOSYNC_DATABASE` constant from wp-config.php (`{blog_id}` is replaced on multisite).
 * 3. A private directory next to (outside) the WordPress root, when it can be created and written.
 * 4. `uploads/woosync-<unguessable>/`, with deny rules for Apache and IIS and an index file.
 *
 * The first choice made for a site is remembered in the `woosync_outbox_path` option, so a CLI run
 * as another user cannot quietly pick a different file than the web server: if it cannot write
 * the remembered file, the extension says so (naming the owner) and the admin notice shows it.
 * Directories are 0700 and files 0600. On multisite every site gets its own file, so one site's
 * log and CLI never show another site's events.
 */
class Outbox_Location {

	const OPTION = 'woosync_outbox_path';

	/**
	 * Path chosen in this request ('' until configure() ran or when php.ini decides).
	 *
	 * @var string
	 */
	private static $path = '';

	/**
	 * `woosync.database` as php.ini (or the pool, or `php -d`) set it, before the plugin changed
	 * it; null until configure() first ran.
	 *
	 * @var string|null
	 */
	private static $ini_value = null;

	/**
	 * Whether each site of a network has its own outbox: the plugin's default (a file per site),
	 * or `{blog_id}` in php.ini's `woosync.database` or in the `WOOSYNC_DATABASE` constant. False
	 * when php.ini (or the constant) names one outbox for the whole network, or the outbox is in
	 * the WordPress database (the network's tables). Always true on a single site.
	 *
	 * @return bool
	 */
	public static function per_site() {
		if ( ! is_multisite() ) {
			return true;
		}
		$ini = null === self::$ini_value ? ( Extension::loaded() ? (string) ini_get( 'woosync.database' ) : '' ) : self::$ini_value;
		if ( '' !== $ini ) {
			return false !== strpos( $ini, '{blog_id}' );
		}
		if ( Wpdb_Outbox::enabled() ) {
			return false; // The WordPress database outbox: one set of tables per network.
		}
		if ( defined( 'WOOSYNC_DATABASE' ) && '' !== (string) WOOSYNC_DATABASE ) {
			return false !== strpos( (string) WOOSYNC_DATABASE, '{blog_id}' );
		}
		return true;
	}

	/**
	 * Sets woosync.database (when php.ini leaves it empty) and woosync.key for this process.
	 *
	 * @return string The outbox path in effect ('' when the extension is not loaded).
	 */
	public static function configure() {
		if ( ! Extension::loaded() ) {
			return '';
		}
		self::configure_key();

		if ( null === self::$ini_value ) {
			// What php.ini, the pool or `php -d` set, read before this plugin ever changes it.
			self::$ini_value = (string) ini_get( 'woosync.database' );
		}
		if ( false !== strpos( self::$ini_value, '{blog_id}' ) ) {
			// One outbox per site: the server administrator's template, filled in per site.
			$path = str_replace( '{blog_id}', (string) get_current_blog_id(), self::$ini_value );
			if ( ! preg_match( '#^(mysql|mariadb)://#i', $path ) ) {
				self::prepare_dir( dirname( $path ), false );
			}
			if ( (string) ini_get( 'woosync.database' ) !== $path ) {
				ini_set( 'woosync.database', $path ); // phpcs:ignore WordPress.PHP.IniSet.Risky
			}
			self::$path = $path;
			return $path;
		}

		$ini = (string) ini_get( 'woosync.database' );
		if ( '' !== $ini && $ini !== self::$path ) {
			// Set by php.ini, the pool or `php -d`: the server administrator decides.
			return $ini;
		}

		$path = self::resolve();
		if ( '' === $path ) {
			return '';
		}
		ini_set( 'woosync.database', $path ); // phpcs:ignore WordPress.PHP.IniSet.Risky
		self::$path = $path;
		if ( ! self::is_url( $path ) ) {
			self::create_private_file( $path );
		}
		return $path;
	}

	/**
	 * Whether php.ini's `woosync.database` is a `{blog_id}` template the plugin fills in.
	 *
	 * @return bool
	 */
	public static function from_template() {
		return null !== self::$ini_value && false !== strpos( self::$ini_value, '{blog_id}' );
	}

	/**
	 * Whether the plugin (not php.ini) chose the outbox path in this process (a `{blog_id}`
	 * template from php.ini filled in by the plugin counts as chosen by the plugin: it changes
	 * with switch_to_blog()).
	 *
	 * @return bool
	 */
	public static function chosen_by_plugin() {
		return '' !== self::$path && (string) ini_get( 'woosync.database' ) === self::$path;
	}

	/**
	 * Whether an outbox is a mysql:// or mariadb:// URL (else a SQLite path).
	 *
	 * @param string $outbox Path or URL.
	 * @return bool
	 */
	public static function is_url( $outbox ) {
		return (bool) preg_match( '#^\s*(mysql|mariadb)://#i', (string) $outbox );
	}

	/**
	 * The outbox in effect for this process, for display: a URL's password is masked.
	 *
	 * @return string
	 */
	public static function current() {
		return Wpdb_Outbox::mask( self::current_raw() );
	}

	/**
	 * The outbox in effect for this process (a URL with its password: never show it).
	 *
	 * @return string
	 */
	public static function current_raw() {
		$ini = Extension::loaded() ? (string) ini_get( 'woosync.database' ) : '';
		if ( '' !== $ini ) {
			return $ini;
		}
		return '' !== self::$path ? self::$path : (string) get_option( self::OPTION, '' );
	}

	/**
	 * Sets `woosync.key` (encryption of endpoint secrets at rest) unless php.ini already did:
	 * the `WOOSYNC_KEY` constant, else a key derived from this site's secret salts.
	 */
	private static function configure_key() {
		if ( false === ini_get( 'woosync.key' ) || '' !== (string) ini_get( 'woosync.key' ) ) {
			return; // Older extension without the setting, or set by php.ini.
		}
		if ( defined( 'WOOSYNC_KEY' ) && '' !== (string) WOOSYNC_KEY ) {
			$key = (string) WOOSYNC_KEY;
		} elseif ( defined( 'AUTH_KEY' ) && defined( 'SECURE_AUTH_KEY' ) ) {
			$key = hash( 'sha256', 'woosync-endpoint-secrets|' . AUTH_KEY . '|' . SECURE_AUTH_KEY );
		} else {
			return;
		}
		ini_set( 'woosync.key', $key ); // phpcs:ignore WordPress.PHP.IniSet.Risky
	}

	/**
	 * The outbox for the current site: the WordPress database's URL when "Store the outbox in the
	 * WordPress database" is on (and the extension can use it), else the SQLite file.
	 *
	 * @return string
	 */
	public static function resolve() {
		if ( Wpdb_Outbox::enabled() ) {
			$url = Wpdb_Outbox::url();
			if ( '' !== $url ) {
				return $url;
			}
		}
		return self::resolve_file();
	}

	/**
	 * The outbox file for the current site, choosing (and remembering) one on first use.
	 *
	 * @return string
	 */
	public static function resolve_file() {
		if ( defined( 'WOOSYNC_DATABASE' ) && '' !== (string) WOOSYNC_DATABASE ) {
			$path = str_replace( '{blog_id}', (string) get_current_blog_id(), (string) WOOSYNC_DATABASE );
			self::prepare_dir( dirname( $path ), false );
			return $path;
		}

		$remembered = (string) get_option( self::OPTION, '' );
		if ( '' !== $remembered ) {
			if ( ! is_dir( dirname( $remembered ) ) ) {
				self::prepare_dir( dirname( $remembered ), self::is_under_uploads( $remembered ) );
			}
			return $remembered;
		}

		$file = is_multisite() ? 'outbox-site-' . get_current_blog_id() . '.sqlite' : 'outbox.sqlite';
		$path = '';

		/**
		 * Directory outside the web root for the outbox; return '' to skip it and use uploads.
		 *
		 * @param string $dir Default: `woosync-<WordPress directory name>` next to the WordPress directory.
		 */
		$private = (string) apply_filters( 'woosync_private_dir', dirname( untrailingslashit( ABSPATH ) ) . '/woosync-' . basename( untrailingslashit( ABSPATH ) ) );
		if ( '' !== $private && '/' !== dirname( $private ) && self::prepare_dir( $private, false ) ) {
			$path = trailingslashit( $private ) . $file;
		} else {
			$uploads = wp_upload_dir( null, false );
			if ( ! empty( $uploads['basedir'] ) ) {
				// Unguessable but stable per site, like WooCommerce's log directory.
				$dir = trailingslashit( $uploads['basedir'] ) . 'woosync-' . wp_hash( 'woosync-outbox' );
				if ( self::prepare_dir( $dir, true ) ) {
					$path = trailingslashit( $dir ) . $file;
				}
			}
		}

		if ( '' !== $path ) {
			update_option( self::OPTION, $path, true );
		}
		return $path;
	}

	/**
	 * Whether a path lies under this site's uploads directory.
	 *
	 * @param string $path Path.
	 * @return bool
	 */
	private static function is_under_uploads( $path ) {
		$uploads = wp_upload_dir( null, false );
		return ! empty( $uploads['basedir'] ) && 0 === strpos( $path, trailingslashit( $uploads['basedir'] ) );
	}

	/**
	 * Creates a private (0700) directory; with $deny, adds deny rules and an index file.
	 *
	 * @param string $dir  Directory.
	 * @param bool   $deny Whether the directory is reachable from the web.
	 * @return bool Whether the directory exists and is writable.
	 */
	public static function prepare_dir( $dir, $deny ) {
		if ( ! is_dir( $dir ) ) {
			$old = umask( 0077 );
			$ok  = wp_mkdir_p( $dir );
			umask( $old );
			if ( ! $ok ) {
				return false;
			}
			@chmod( $dir, 0700 ); // phpcs:ignore WordPress.PHP.NoSilencedErrors.Discouraged, WordPress.WP.AlternativeFunctions.file_system_operations_chmod
		}
		if ( ! wp_is_writable( $dir ) ) {
			return false;
		}
		if ( $deny ) {
			$files = array(
				'.htaccess'  => "# Written by woosync: the outbox is not for the web.\n<IfModule mod_authz_core.c>\n\tRequire all denied\n</IfModule>\n<IfModule !mod_authz_core.c>\n\tDeny from all\n</IfModule>\n",
				'web.config' => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<configuration>\n\t<system.webServer>\n\t\t<authorization>\n\t\t\t<deny users=\"*\" />\n\t\t</authorization>\n\t</system.webServer>\n</configuration>\n",
				'index.php'  => "<?php\n// Silence is golden.\n",
				'index.html' => '',
			);
			foreach ( $files as $name => $content ) {
				$file = trailingslashit( $dir ) . $name;
				if ( ! file_exists( $file ) ) {
					file_put_contents( $file, $content ); // phpcs:ignore WordPress.WP.AlternativeFunctions.file_system_operations_file_put_contents
					@chmod( $file, 0644 ); // phpcs:ignore WordPress.PHP.NoSilencedErrors.Discouraged, WordPress.WP.AlternativeFunctions.file_system_operations_chmod
				}
			}
		}
		return true;
	}

	/**
	 * Lets the extension create a missing outbox file under a 0077 umask, then makes sure the
	 * files are 0600.
	 *
	 * @param string $path Outbox path.
	 */
	private static function create_private_file( $path ) {
		if ( file_exists( $path ) ) {
			return;
		}
		$old = umask( 0077 );
		try {
			woosync_status(); // Opens (and so creates) the outbox.
		} catch ( \Throwable $e ) {
			// Reported by the admin notice and the CLI through woosync_status().
			unset( $e );
		} finally {
			umask( $old );
		}
		foreach ( array( '', '-wal', '-shm', '.lock' ) as $suffix ) {
			if ( file_exists( $path . $suffix ) ) {
				@chmod( $path . $suffix, 0600 ); // phpcs:ignore WordPress.PHP.NoSilencedErrors.Discouraged, WordPress.WP.AlternativeFunctions.file_system_operations_chmod
			}
		}
	}
}
