<?php
/**
 * The delivery table of the WooSync log.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

if ( ! class_exists( '\WP_List_Table' ) ) {
	require_once ABSPATH . 'wp-admin/includes/class-wp-list-table.php';
}

/**
 * One row per delivery (event × endpoint), newest first, straight from woosync_events().
 *
 * Pagination is server side with limit/offset. woosync_events() returns no total for a filtered
 * query, so the table asks for one row more than it shows to know whether a next page exists and
 * renders "previous / next" links instead of "page N of M".
 */
class Log_Table extends \WP_List_Table {

	/**
	 * Outbox status.
	 *
	 * @var array
	 */
	private $status;

	/**
	 * Endpoints by name.
	 *
	 * @var array
	 */
	private $endpoints;

	/**
	 * Whether another page follows.
	 *
	 * @var bool
	 */
	private $has_next = false;

	/**
	 * Current page number.
	 *
	 * @var int
	 */
	private $page_no = 1;

	/**
	 * Events fetched for the latency column, by id.
	 *
	 * @var array
	 */
	private $events = array();

	/**
	 * Error from the extension, if any.
	 *
	 * @var string
	 */
	private $error = '';

	/**
	 * Constructor.
	 *
	 * @param array $status    woosync_status().
	 * @param array $endpoints Endpoints by name.
	 */
	public function __construct( array $status, array $endpoints ) {
		parent::__construct(
			array(
				'singular' => 'delivery',
				'plural'   => 'deliveries',
				'ajax'     => false,
			)
		);
		$this->status    = $status;
		$this->endpoints = $endpoints;
	}

	/**
	 * States offered by the filter, with labels.
	 *
	 * @return array<string,string>
	 */
	public static function states() {
		return array(
			'pending'    => __( 'Pending / retrying', 'woosync' ),
			'in_flight'  => __( 'Sending', 'woosync' ),
			'delivered'  => __( 'Delivered', 'woosync' ),
			'dead'       => __( 'Dead', 'woosync' ),
			'superseded' => __( 'Superseded', 'woosync' ),
			'unrouted'   => __( 'Unrouted', 'woosync' ),
		);
	}

	/**
	 * A request parameter (GET), sanitized.
	 *
	 * @param string $name Name.
	 * @return string
	 */
	private static function param( $name ) {
		// phpcs:ignore WordPress.Security.NonceVerification.Recommended -- read-only filters.
		return isset( $_GET[ $name ] ) ? trim( sanitize_text_field( wp_unslash( $_GET[ $name ] ) ) ) : '';
	}

	/**
	 * Current filters.
	 *
	 * @return array{status:string,topic:string,key:string,endpoint:string,s:string}
	 */
	public function filters() {
		$status = self::param( 'status' );
		return array(
			'status'   => isset( self::states()[ $status ] ) ? $status : '',
			'topic'    => self::param( 'topic' ),
			'key'      => self::param( 'key' ),
			'endpoint' => self::param( 'endpoint' ),
			's'        => self::param( 's' ),
		);
	}

	/**
	 * Columns.
	 *
	 * @return array
	 */
	public function get_columns() {
		return array(
			'created_at' => __( 'Time', 'woosync' ),
			'topic'      => __( 'Topic', 'woosync' ),
			'key'        => __( 'Key', 'woosync' ),
			'endpoint'   => __( 'Endpoint', 'woosync' ),
			'state'      => __( 'State', 'woosync' ),
			'attempts'   => __( 'Attempts', 'woosync' ),
			'result'     => __( 'Last result', 'woosync' ),
			'latency'    => __( 'Latency', 'woosync' ),
		);
	}

	/**
	 * Primary column (row actions, responsive toggle).
	 *
	 * @return string
	 */
	protected function get_default_primary_column_name() {
		return 'topic';
	}

	/**
	 * Loads the page of deliveries.
	 */
	public function prepare_items() {
		$this->_column_headers = array( $this->get_columns(), array(), array(), 'topic' );
		$per_page              = $this->get_items_per_page( Log_Page::PER_PAGE_OPTION, 20 );
		$this->page_no         = max( 1, $this->get_pagenum() );
		$f                     = $this->filters();
		$this->items           = array();

		try {
			if ( '' !== $f['s'] && Log_Page::is_event_id( $f['s'] ) ) {
				$event = Site_Scope::event( $f['s'] );
				if ( is_array( $event ) ) {
					$this->events[ $event['id'] ] = $event;
					foreach ( (array) ( $event['deliveries'] ?? array() ) as $delivery ) {
						$this->items[] = array_merge(
							array(
								'id'         => $event['id'],
								'topic'      => $event['topic'],
								'key'        => $event['key'],
								'sequence'   => $event['sequence'],
								'created_at' => $event['created_at'],
							),
							$delivery
						);
					}
				}
			} else {
				$filter = array(
					'limit'  => $per_page + 1,
					'offset' => ( $this->page_no - 1 ) * $per_page,
				);
				foreach ( array( 'status', 'topic', 'key', 'endpoint' ) as $name ) {
					if ( '' !== $f[ $name ] ) {
						$filter[ $name ] = $f[ $name ];
					}
				}
				if ( '' !== $f['s'] && '' === $f['key'] ) {
					$filter['key'] = $f['s'];
				}
				if ( isset( $filter['key'] ) ) {
					$filter['key'] = Site_Scope::user_key( $filter['key'] );
				}
				$rows           = (array) woosync_events( Site_Scope::events_filter( $filter ) );
				$this->has_next = count( $rows ) > $per_page;
				$this->items    = array_slice( $rows, 0, $per_page );
			}
		} catch ( \Throwable $e ) {
			$this->error = $e->getMessage();
		}
		$this->set_pagination_args(
			array(
				'total_items' => count( $this->items ),
				'per_page'    => $per_page,
			)
		);
	}

	/**
	 * The event of a row (cached; for latency and response data).
	 *
	 * @param string $id Event id.
	 * @return array|null
	 */
	private function event( $id ) {
		if ( ! array_key_exists( $id, $this->events ) ) {
			try {
				$this->events[ $id ] = Site_Scope::event( $id );
			} catch ( \Throwable $e ) {
				$this->events[ $id ] = null;
			}
		}
		return $this->events[ $id ];
	}

	/**
	 * Last attempt of a row's delivery.
	 *
	 * @param array $item Row.
	 * @return array|null
	 */
	private function last_attempt( array $item ) {
		$event = $this->event( (string) $item['id'] );
		$last  = null;
		foreach ( (array) ( $event['attempts'] ?? array() ) as $attempt ) {
			if ( ( $attempt['endpoint'] ?? '' ) === ( $item['endpoint'] ?? '' ) ) {
				$last = $attempt;
			}
		}
		return $last;
	}

	/**
	 * State links with counts (from woosync_status(), so they cost nothing).
	 *
	 * @return array
	 */
	protected function get_views() {
		$f       = $this->filters();
		$keep    = array_filter(
			array(
				'topic'    => $f['topic'],
				'key'      => $f['key'],
				'endpoint' => $f['endpoint'],
			),
			'strlen'
		);
		$all     = 0;
		$views   = array();
		$counts  = array();
		foreach ( array_keys( self::states() ) as $state ) {
			$counts[ $state ] = (int) ( $this->status[ $state ] ?? 0 );
			$all             += $counts[ $state ];
		}
		$views['all'] = sprintf(
			'<a href="%1$s"%2$s>%3$s <span class="count">(%4$s)</span></a>',
			esc_url( Log_Page::url( $keep ) ),
			'' === $f['status'] ? ' class="current" aria-current="page"' : '',
			esc_html__( 'All', 'woosync' ),
			esc_html( number_format_i18n( $all ) )
		);
		foreach ( self::states() as $state => $label ) {
			if ( 0 === $counts[ $state ] && $f['status'] !== $state && ! in_array( $state, array( 'pending', 'delivered', 'dead' ), true ) ) {
				continue;
			}
			$views[ $state ] = sprintf(
				'<a href="%1$s"%2$s data-state="%3$s">%4$s <span class="count">(%5$s)</span></a>',
				esc_url( Log_Page::url( array_merge( $keep, array( 'status' => $state ) ) ) ),
				$f['status'] === $state ? ' class="current" aria-current="page"' : '',
				esc_attr( $state ),
				esc_html( $label ),
				esc_html( number_format_i18n( $counts[ $state ] ) )
			);
		}
		return $views;
	}

	/**
	 * Filters above the table.
	 *
	 * @param string $which top|bottom.
	 */
	protected function extra_tablenav( $which ) {
		if ( 'top' !== $which ) {
			return;
		}
		$f = $this->filters();
		echo '<div class="alignleft actions woosync-filters">';
		echo '<label class="screen-reader-text" for="woosync-filter-status">' . esc_html__( 'Filter by state', 'woosync' ) . '</label>';
		echo '<select name="status" id="woosync-filter-status"><option value="">' . esc_html__( 'All states', 'woosync' ) . '</option>';
		foreach ( self::states() as $state => $label ) {
			echo '<option value="' . esc_attr( $state ) . '"' . selected( $f['status'], $state, false ) . '>' . esc_html( $label ) . '</option>';
		}
		echo '</select>';
		echo '<label class="screen-reader-text" for="woosync-filter-topic">' . esc_html__( 'Filter by topic', 'woosync' ) . '</label>';
		echo '<input type="text" name="topic" id="woosync-filter-topic" list="woosync-topics" value="' . esc_attr( $f['topic'] ) . '" placeholder="' . esc_attr__( 'Topic', 'woosync' ) . '" size="18">';
		echo '<datalist id="woosync-topics">';
		$topics = array( 'product.stock_updated', 'order.created', 'order.updated', 'order.status_changed', 'customer.created', 'customer.updated', Log_Page::TEST_TOPIC );
		foreach ( $topics as $topic ) {
			echo '<option value="' . esc_attr( $topic ) . '"></option>';
		}
		echo '</datalist>';
		echo '<label class="screen-reader-text" for="woosync-filter-key">' . esc_html__( 'Filter by key', 'woosync' ) . '</label>';
		echo '<input type="text" name="key" id="woosync-filter-key" value="' . esc_attr( $f['key'] ) . '" placeholder="' . esc_attr__( 'Key, e.g. order:42', 'woosync' ) . '" size="14">';
		if ( count( $this->endpoints ) > 1 || '' !== $f['endpoint'] ) {
			echo '<label class="screen-reader-text" for="woosync-filter-endpoint">' . esc_html__( 'Filter by endpoint', 'woosync' ) . '</label>';
			echo '<select name="endpoint" id="woosync-filter-endpoint"><option value="">' . esc_html__( 'All endpoints', 'woosync' ) . '</option>';
			foreach ( array_keys( $this->endpoints ) as $name ) {
				echo '<option value="' . esc_attr( $name ) . '"' . selected( $f['endpoint'], $name, false ) . '>' . esc_html( $name ) . '</option>';
			}
			echo '</select>';
		}
		submit_button( __( 'Filter', 'woosync' ), '', 'filter_action', false, array( 'id' => 'woosync-filter-submit' ) );
		if ( array_filter( $f, 'strlen' ) ) {
			echo ' <a class="button-link woosync-clear" href="' . esc_url( Log_Page::url() ) . '">' . esc_html__( 'Clear filters', 'woosync' ) . '</a>';
		}
		echo '</div>';
	}

	/**
	 * Previous / next pagination (no total count for filtered queries).
	 *
	 * @param string $which top|bottom.
	 */
	protected function pagination( $which ) {
		if ( 1 === $this->page_no && ! $this->has_next ) {
			return;
		}
		$current = remove_query_arg( array( 'woosync_done', '_wpnonce', '_wp_http_referer', 'filter_action' ) );
		echo '<div class="tablenav-pages woosync-pages"><span class="pagination-links">';
		if ( $this->page_no > 1 ) {
			printf(
				'<a class="prev-page button" href="%1$s"><span class="screen-reader-text">%2$s</span><span aria-hidden="true">&lsaquo;</span></a> ',
				esc_url( add_query_arg( 'paged', $this->page_no - 1, $current ) ),
				esc_html__( 'Previous page', 'woosync' )
			);
		} else {
			echo '<span class="tablenav-pages-navspan button disabled" aria-hidden="true">&lsaquo;</span> ';
		}
		/* translators: %s: page number */
		echo '<span class="paging-input">' . esc_html( sprintf( __( 'Page %s', 'woosync' ), number_format_i18n( $this->page_no ) ) ) . '</span> ';
		if ( $this->has_next ) {
			printf(
				'<a class="next-page button" href="%1$s"><span class="screen-reader-text">%2$s</span><span aria-hidden="true">&rsaquo;</span></a>',
				esc_url( add_query_arg( 'paged', $this->page_no + 1, $current ) ),
				esc_html__( 'Next page', 'woosync' )
			);
		} else {
			echo '<span class="tablenav-pages-navspan button disabled" aria-hidden="true">&rsaquo;</span>';
		}
		echo '</span></div>';
	}

	/**
	 * Message for an empty table.
	 */
	public function no_items() {
		if ( '' !== $this->error ) {
			/* translators: %s: error message */
			echo esc_html( sprintf( __( 'The outbox cannot be read: %s', 'woosync' ), $this->error ) );
			return;
		}
		esc_html_e( 'No deliveries match these filters.', 'woosync' );
	}

	/**
	 * Row with data attributes (for tests and scripts).
	 *
	 * @param array $item Row.
	 */
	public function single_row( $item ) {
		printf(
			'<tr class="woosync-row woosync-row--%1$s" data-event="%2$s" data-endpoint="%3$s" data-state="%1$s">',
			esc_attr( (string) ( $item['state'] ?? '' ) ),
			esc_attr( (string) ( $item['id'] ?? '' ) ),
			esc_attr( (string) ( $item['endpoint'] ?? '' ) )
		);
		$this->single_row_columns( $item );
		echo '</tr>';
	}

	/**
	 * Time column.
	 *
	 * @param array $item Row.
	 * @return string
	 */
	public function column_created_at( $item ) {
		return Log_Page::time_html( $item['created_at'] ?? null );
	}

	/**
	 * Topic column with row actions.
	 *
	 * @param array $item Row.
	 * @return string
	 */
	public function column_topic( $item ) {
		$id   = (string) ( $item['id'] ?? '' );
		$view = Log_Page::url( array( 'event' => $id ) );
		$out  = sprintf(
			'<strong><a class="row-title woosync-view" href="%1$s" data-event="%2$s">%3$s</a></strong><br><code class="woosync-id">%4$s</code>',
			esc_url( $view ),
			esc_attr( $id ),
			esc_html( (string) ( $item['topic'] ?? '' ) ),
			esc_html( $id )
		);
		$actions = array(
			'view' => sprintf( '<a class="woosync-view" href="%1$s" data-event="%2$s">%3$s</a>', esc_url( $view ), esc_attr( $id ), esc_html__( 'View details', 'woosync' ) ),
		);
		$state = (string) ( $item['state'] ?? '' );
		if ( in_array( $state, array( 'dead', 'delivered', 'unrouted' ), true ) ) {
			$label            = 'delivered' === $state ? __( 'Replay', 'woosync' ) : __( 'Retry', 'woosync' );
			$actions['retry'] = sprintf( '<a class="woosync-retry-link" href="%1$s">%2$s</a>', esc_url( Log_Page::retry_url( $id ) ), esc_html( $label ) );
		}
		return $out . $this->row_actions( $actions );
	}

	/**
	 * Key column (a link filtering by key).
	 *
	 * @param array $item Row.
	 * @return string
	 */
	public function column_key( $item ) {
		$key = (string) ( $item['key'] ?? '' );
		if ( '' === $key ) {
			return '—';
		}
		return sprintf( '<a href="%1$s"><code>%2$s</code></a>', esc_url( Log_Page::url( array( 'key' => $key ) ) ), esc_html( $key ) );
	}

	/**
	 * Endpoint column.
	 *
	 * @param array $item Row.
	 * @return string
	 */
	public function column_endpoint( $item ) {
		return esc_html( (string) ( $item['endpoint'] ?? '' ) );
	}

	/**
	 * State column.
	 *
	 * @param array $item Row.
	 * @return string
	 */
	public function column_state( $item ) {
		return Log_Page::state_html( $item );
	}

	/**
	 * Attempts column.
	 *
	 * @param array $item Row.
	 * @return string
	 */
	public function column_attempts( $item ) {
		return esc_html( number_format_i18n( (int) ( $item['attempts'] ?? 0 ) ) );
	}

	/**
	 * Last HTTP status or error.
	 *
	 * @param array $item Row.
	 * @return string
	 */
	public function column_result( $item ) {
		$status = $item['last_status'] ?? null;
		$error  = (string) ( $item['last_error'] ?? '' );
		if ( ( null === $status || '' === $status ) && '' === $error ) {
			return '—';
		}
		$ok   = null !== $status && (int) $status >= 200 && (int) $status < 300;
		$html = '';
		if ( null !== $status && '' !== $status ) {
			/* translators: %d: HTTP status code */
			$html .= '<span class="woosync-http woosync-http--' . ( $ok ? 'ok' : 'bad' ) . '">' . esc_html( sprintf( __( 'HTTP %d', 'woosync' ), (int) $status ) ) . '</span>';
		}
		if ( '' !== $error && ( null === $status || '' === $status || 'HTTP ' . (int) $status !== $error ) ) {
			$short = strlen( $error ) > 120 ? substr( $error, 0, 117 ) . '…' : $error;
			$html .= ( '' !== $html ? '<br>' : '' ) . '<span class="woosync-error" title="' . esc_attr( $error ) . '">' . esc_html( $short ) . '</span>';
		}
		return $html;
	}

	/**
	 * Latency of the last attempt.
	 *
	 * @param array $item Row.
	 * @return string
	 */
	public function column_latency( $item ) {
		if ( (int) ( $item['attempts'] ?? 0 ) < 1 ) {
			return '—';
		}
		if ( array_key_exists( 'last_duration_ms', $item ) ) {
			return esc_html( Log_Page::ms( $item['last_duration_ms'] ) );
		}
		$last = $this->last_attempt( $item );
		return esc_html( Log_Page::ms( $last['duration_ms'] ?? null ) );
	}

	/**
	 * Fallback for unknown columns.
	 *
	 * @param array  $item        Row.
	 * @param string $column_name Column.
	 * @return string
	 */
	public function column_default( $item, $column_name ) {
		return esc_html( is_scalar( $item[ $column_name ] ?? null ) ? (string) $item[ $column_name ] : '' );
	}
}
