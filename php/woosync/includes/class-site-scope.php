<?php
/**
 * Which endpoints, keys and events belong to the current site.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * One naming scheme for every feature that names endpoints or ordering keys, so that the sites of
 * a multisite network can share one outbox (php.ini's `woosync.database`) without seeing or
 * steering each other's events:
 *
 * - single site: endpoint `wordpress`, keys `order:<id>`, `product:<id>`, `customer:<id>` (the
 *   public contract of earlier versions, unchanged);
 * - multisite (every site, the main one too, whether the outbox is shared or per site): endpoint
 *   `wordpress@<blog_id>`, keys `site:<blog_id>:order:<id>` and so on.
 *
 * Each site's log, `wp woosync` commands, privacy exporter and eraser and retries filter by the
 * key prefix `site:<blog_id>:`; its events are routed to its own endpoint and to endpoints that
 * belong to no site (`default` from php.ini, endpoints saved by hand), never to another site's
 * `wordpress@<n>`.
 */
class Site_Scope {

	/**
	 * Endpoint names per blog, for this request (see dispatch_endpoints()).
	 *
	 * @var array<int,array>
	 */
	private static $routes = array();

	/**
	 * The plugin's endpoint name for a site.
	 *
	 * @param int|null $blog_id Site (default: the current one).
	 * @return string
	 */
	public static function endpoint_name( $blog_id = null ) {
		if ( ! is_multisite() ) {
			return 'wordpress';
		}
		return 'wordpress@' . (int) ( null === $blog_id ? get_current_blog_id() : $blog_id );
	}

	/**
	 * The key prefix of this site's events: '' on a single site, `site:<blog_id>:` on multisite.
	 *
	 * @param int|null $blog_id Site (default: the current one).
	 * @return string
	 */
	public static function prefix( $blog_id = null ) {
		if ( ! is_multisite() ) {
			return '';
		}
		return 'site:' . (int) ( null === $blog_id ? get_current_blog_id() : $blog_id ) . ':';
	}

	/**
	 * An ordering key of this site: `order:7`, or `site:2:order:7` on multisite.
	 *
	 * @param string     $kind Kind such as `order`, `product`, `customer`.
	 * @param int|string $id   Object id.
	 * @return string
	 */
	public static function key( $kind, $id ) {
		return self::prefix() . $kind . ':' . $id;
	}

	/**
	 * The key as the user typed it, made a key of this site: on multisite `order:7` becomes
	 * `site:<blog_id>:order:7` (a key that already carries this site's prefix is kept).
	 *
	 * @param string $key Key.
	 * @return string
	 */
	public static function user_key( $key ) {
		$key    = (string) $key;
		$prefix = self::prefix();
		if ( '' === $prefix || 0 === strpos( $key, $prefix ) ) {
			return $key;
		}
		return $prefix . $key;
	}

	/**
	 * Whether an event with this key belongs to the current site.
	 *
	 * @param string|null $key Event key.
	 * @return bool
	 */
	public static function owns_key( $key ) {
		$prefix = self::prefix();
		return '' === $prefix || 0 === strpos( (string) $key, $prefix );
	}

	/**
	 * Whether the current site may see and steer an endpoint: on multisite, not another site's
	 * `wordpress@<n>` (nor `wordpress`, the name every site shared before 0.2).
	 *
	 * @param string $name Endpoint name.
	 * @return bool
	 */
	public static function owns_endpoint( $name ) {
		if ( ! is_multisite() ) {
			return true;
		}
		$name = (string) $name;
		if ( 'wordpress' === $name ) {
			return false;
		}
		if ( preg_match( '/@(\d+)$/', $name, $m ) ) {
			return (int) $m[1] === get_current_blog_id();
		}
		return true;
	}

	/**
	 * A woosync_events() filter narrowed to this site's events.
	 *
	 * @param array $filter Filter.
	 * @return array
	 */
	public static function events_filter( array $filter ) {
		$prefix = self::prefix();
		if ( '' !== $prefix ) {
			$filter['key_prefix'] = $prefix;
		}
		return $filter;
	}

	/**
	 * Whether an event (woosync_event() or a woosync_events() row) belongs to this site.
	 *
	 * @param array|null $event Event.
	 * @return bool
	 */
	public static function owns_event( $event ) {
		return is_array( $event ) && self::owns_key( $event['key'] ?? '' );
	}

	/**
	 * woosync_event() for this site: null for an unknown id and for another site's event.
	 *
	 * @param string $id Event id.
	 * @return array|null
	 * @throws \Throwable From the extension (malformed id, unreadable outbox).
	 */
	public static function event( $id ) {
		$event = woosync_event( (string) $id );
		return self::owns_event( $event ) ? $event : null;
	}

	/**
	 * woosync_retry() for this site's events. An unrouted event is routed again by the extension
	 * to every endpoint that matches its topic now, other sites' included: where the outbox holds
	 * other sites' endpoints, it is refused (dispatch anew, or save this site's CRM URL and use
	 * `wp woosync reconcile`).
	 *
	 * @param string $id Event id.
	 * @return bool Whether anything was requeued.
	 * @throws \InvalidArgumentException For an unrouted event in an outbox other sites share.
	 * @throws \Throwable From the extension.
	 */
	public static function retry( $id ) {
		$event = self::event( $id );
		if ( null === $event ) {
			return false;
		}
		if ( ! empty( $event['unrouted'] ) && null !== self::dispatch_endpoints() ) {
			/* translators: %s: event id */
			throw new \InvalidArgumentException( sprintf( __( 'Event %s was stored while no endpoint of this site took it; retrying it here could send it to another site\'s endpoint, so it is not retried. Set this site\'s CRM URL, then send the current state with "wp woosync reconcile".', 'woosync' ), $id ) );
		}
		return (bool) woosync_retry( (string) $id );
	}

	/**
	 * Requeues this site's dead deliveries (of one endpoint, or of every endpoint it owns). On a
	 * single site this is woosync_retry_dead(). On multisite, the site's own endpoint is requeued
	 * as a whole; dead deliveries of shared endpoints (`default`) are requeued per event of this
	 * site, skipping events already delivered elsewhere (a retry would send those again).
	 *
	 * @param string|null $endpoint Endpoint name, or null for all.
	 * @return int Deliveries (own endpoint) plus events (shared endpoints) requeued.
	 * @throws \InvalidArgumentException For another site's endpoint.
	 * @throws \Throwable From the extension.
	 */
	public static function retry_dead( $endpoint = null ) {
		if ( '' === self::prefix() ) {
			return (int) woosync_retry_dead( $endpoint );
		}
		if ( null !== $endpoint && ! self::owns_endpoint( $endpoint ) ) {
			/* translators: %s: endpoint name */
			throw new \InvalidArgumentException( sprintf( __( 'Endpoint "%s" belongs to another site of the network.', 'woosync' ), $endpoint ) );
		}
		$own = self::endpoint_name();
		$n   = 0;
		if ( null === $endpoint || $own === $endpoint ) {
			$n += (int) woosync_retry_dead( $own );
		}
		if ( $own === $endpoint ) {
			return $n;
		}
		$ids    = array();
		$offset = 0;
		do {
			$filter = self::events_filter(
				array(
					'status' => 'dead',
					'limit'  => 500,
					'offset' => $offset,
				)
			);
			if ( null !== $endpoint ) {
				$filter['endpoint'] = $endpoint;
			}
			$rows = (array) woosync_events( $filter );
			foreach ( $rows as $row ) {
				if ( ( $row['endpoint'] ?? '' ) !== $own && self::owns_key( $row['key'] ?? '' ) ) {
					$ids[ (string) $row['id'] ] = true;
				}
			}
			$offset += 500;
		} while ( 500 === count( $rows ) );
		foreach ( array_keys( $ids ) as $id ) {
			$event     = woosync_event( $id );
			$delivered = false;
			foreach ( (array) ( $event['deliveries'] ?? array() ) as $delivery ) {
				$delivered = $delivered || 'delivered' === ( $delivery['state'] ?? '' );
			}
			if ( is_array( $event ) && ! $delivered && woosync_retry( $id ) ) {
				++$n;
			}
		}
		return $n;
	}

	/**
	 * The `endpoints` option for woosync_dispatch() on multisite: every endpoint this site owns
	 * (its own, `default`, endpoints of no site), so an outbox shared by the network never sends
	 * one site's events to another site's CRM. Null on a single site, and when no endpoint
	 * belongs to another site (every endpoint).
	 *
	 * @return array|null
	 */
	public static function dispatch_endpoints() {
		if ( ! is_multisite() ) {
			return null;
		}
		$blog = get_current_blog_id();
		$key  = $blog . '|' . Outbox_Location::current();
		if ( ! array_key_exists( $key, self::$routes ) ) {
			$names    = array();
			$excluded = false;
			if ( Extension::has( 'woosync_endpoints' ) ) {
				foreach ( (array) woosync_endpoints() as $endpoint ) {
					$name = is_array( $endpoint ) ? (string) ( $endpoint['name'] ?? '' ) : '';
					if ( '' === $name ) {
						continue;
					}
					if ( self::owns_endpoint( $name ) ) {
						$names[] = $name;
					} else {
						$excluded = true;
					}
				}
			}
			// Nothing to keep out (e.g. this site's own outbox): no narrowing, every endpoint.
			// The extension refuses unknown names, so only existing ones are listed; an empty list
			// leaves the event unrouted (kept, sent nowhere) rather than at another site's CRM.
			self::$routes[ $key ] = $excluded ? array_values( array_unique( $names ) ) : null;
		}
		return self::$routes[ $key ];
	}

	/**
	 * Forgets the endpoint names cached for dispatch (after an endpoint was saved or deleted).
	 */
	public static function forget_routes() {
		self::$routes = array();
	}

	/**
	 * Whether the outbox is shared by the sites of a network (multisite with php.ini's
	 * `woosync.database` without `{blog_id}`, or a MariaDB/MySQL URL without it).
	 *
	 * @return bool
	 */
	public static function shared_outbox() {
		return is_multisite() && ! Outbox_Location::per_site();
	}
}
