<?php
/**
 * The `mysql` benchmark's Action Scheduler baseline, run with the real WP-CLI (`wp eval-file`) in the
 * real WordPress + WooCommerce, loaded once: times only the call, per call, in ns.
 *
 * BENCH_MODE=as_enqueue  as_enqueue_async_action( 'woocommerce_deliver_webhook_async',
 *                        array( 'webhook_id' => 1, 'arg' => <order id> ), 'woocommerce-webhooks' )
 * BENCH_MODE=wc_queue    what WooCommerce itself does per webhook delivery it queues
 *                        (wc_webhook_execute_queue): WC()->queue()->get_next( ... ) and, when nothing
 *                        is scheduled for those arguments, WC()->queue()->add( ... )
 * BENCH_WOOSYNC=1        also a keyed woosync_dispatch() (the bench's order-like payload, 500 keys) into
 *                        the outbox woosync.database names, call by call in turn with the above (the
 *                        order rotates), so both are timed in the same process at the same moments
 * BENCH_N calls each, each with a new argument (a new order), as a shop's webhooks would queue them.
 * Prints one JSON line: samples per system, the Action Scheduler version, the actions now in the table.
 */

require_once dirname( __DIR__ ) . '/common.php';

$n       = max( 1, (int) getenv( 'BENCH_N' ) );
$mode    = getenv( 'BENCH_MODE' ) ?: 'as_enqueue';
$base    = (int) getenv( 'BENCH_BASE' );
$systems = getenv( 'BENCH_WOOSYNC' ) ? array( $mode, 'woosync' ) : array( $mode );
$s       = array_fill_keys( $systems, array() );
global $wpdb;
for ( $i = 0; $i < $n; $i++ ) {
	for ( $j = 0; $j < count( $systems ); $j++ ) {
		$sys = $systems[ ( $i + $j ) % count( $systems ) ];
		if ( 'woosync' === $sys ) {
			$p = bench_payload( $i );
			$o = array( 'key' => 'order:' . ( $i % 500 ) );
			$t = hrtime( true );
			woosync_dispatch( 'order.updated', $p, $o );
			$s[ $sys ][] = hrtime( true ) - $t;
			continue;
		}
		$args = array(
			'webhook_id' => 1,
			'arg'        => 1000000 + $base + $i,
		);
		$t    = hrtime( true );
		if ( 'wc_queue' === $sys ) {
			$next = WC()->queue()->get_next( 'woocommerce_deliver_webhook_async', $args, 'woocommerce-webhooks' );
			if ( is_null( $next ) || $next->getTimestamp() >= ( 600 + gmdate( 'U' ) ) ) {
				WC()->queue()->add( 'woocommerce_deliver_webhook_async', $args, 'woocommerce-webhooks' );
			}
		} else {
			as_enqueue_async_action( 'woocommerce_deliver_webhook_async', $args, 'woocommerce-webhooks' );
		}
		$s[ $sys ][] = hrtime( true ) - $t;
	}
}
$count = (int) $wpdb->get_var( "SELECT COUNT(*) FROM {$wpdb->prefix}actionscheduler_actions WHERE hook = 'woocommerce_deliver_webhook_async'" );
$out   = array(
	'samples'          => $s,
	'mode'             => $mode,
	'action_scheduler' => class_exists( 'ActionScheduler_Versions' ) ? ActionScheduler_Versions::instance()->latest_version() : null,
	'actions'          => $count,
	'db_host'          => DB_HOST,
);
if ( function_exists( 'woosync_status' ) ) {
	$w    = woosync_status();
	$out += array(
		'worker'     => $w['worker'],
		'sender_pid' => $w['sender_pid'] ?? null,
		'pid'        => getmypid(),
	);
}
echo wp_json_encode( $out ), "\n";
