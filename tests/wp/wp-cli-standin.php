<?php
/**
 * A small stand-in for WP-CLI — NOT WP-CLI. WP-CLI cannot be installed in the test environment,
 * so this mirrors the names the woosync command uses: WP_CLI::add_command/line/log/success/
 * warning/error (error prints "Error: …" to STDERR and exits 1, halting like the real one),
 * WP_CLI\Utils\format_items/make_progress_bar/get_flag_value. Each method names the WP-CLI file
 * it mirrors. There is no __callStatic: an unknown method is a PHP Error.
 */

namespace {

	/** Mirrors wp-cli/wp-cli php/class-wp-cli.php. */
	class WP_CLI {
		/** @var array Registered commands: name => callable or class name. */
		public static $commands = array();

		/** Mirrors WP_CLI::add_command() (php/class-wp-cli.php). */
		public static function add_command( $name, $callable, $args = array() ) {
			self::$commands[ $name ] = $callable;
			return true;
		}
		/** Mirrors WP_CLI::line() (php/class-wp-cli.php): STDOUT. */
		public static function line( $message = '' ) {
			fwrite( STDOUT, $message . "\n" );
		}
		/** Mirrors WP_CLI::log() (php/class-wp-cli.php): STDOUT. */
		public static function log( $message ) {
			fwrite( STDOUT, $message . "\n" );
		}
		/** Mirrors WP_CLI::success() (php/class-wp-cli.php): STDOUT. */
		public static function success( $message ) {
			fwrite( STDOUT, 'Success: ' . $message . "\n" );
		}
		/** Mirrors WP_CLI::warning() (php/class-wp-cli.php): STDERR. */
		public static function warning( $message ) {
			fwrite( STDERR, 'Warning: ' . $message . "\n" );
		}
		/** Mirrors WP_CLI::debug() (php/class-wp-cli.php): silent without --debug. */
		public static function debug( $message, $group = false ) {
		}
		/** Mirrors WP_CLI::error() (php/class-wp-cli.php): STDERR, then exit 1 when $exit. */
		public static function error( $message, $exit = true ) {
			fwrite( STDERR, 'Error: ' . ( $message instanceof \WP_Error ? $message->get_error_message() : $message ) . "\n" );
			if ( true === $exit ) {
				exit( 1 );
			} elseif ( is_int( $exit ) && $exit > 0 ) {
				exit( $exit );
			}
		}
		/** Mirrors WP_CLI::halt() (php/class-wp-cli.php). */
		public static function halt( $return_code ) {
			exit( (int) $return_code );
		}

		/**
		 * Runs `<command> <subcommand> [args] [--assoc]` like WP-CLI's Dispatcher\Subcommand:
		 * the subcommand is the public method, or the one whose docblock has `@subcommand <name>`.
		 */
		public static function run_command( array $argv ) {
			$positional = array();
			$assoc      = array();
			foreach ( $argv as $arg ) {
				if ( preg_match( '/^--([^=]+)=(.*)$/s', $arg, $m ) ) {
					$assoc[ $m[1] ] = $m[2];
				} elseif ( preg_match( '/^--no-(.+)$/', $arg, $m ) ) {
					$assoc[ $m[1] ] = false;
				} elseif ( preg_match( '/^--(.+)$/', $arg, $m ) ) {
					$assoc[ $m[1] ] = true;
				} else {
					$positional[] = $arg;
				}
			}
			$name = array_shift( $positional );
			if ( null === $name || ! isset( self::$commands[ $name ] ) ) {
				self::error( sprintf( "'%s' is not a registered wp command. See 'wp help' for available commands.", $name ) );
			}
			$target = self::$commands[ $name ];
			if ( is_callable( $target ) && ! is_string( $target ) ) {
				call_user_func( $target, $positional, $assoc );
				return;
			}
			$sub    = array_shift( $positional );
			$class  = new \ReflectionClass( $target );
			$method = null;
			foreach ( $class->getMethods( \ReflectionMethod::IS_PUBLIC ) as $candidate ) {
				if ( $candidate->isStatic() || 0 === strpos( $candidate->getName(), '__' ) ) {
					continue;
				}
				$doc   = (string) $candidate->getDocComment();
				$label = preg_match( '/@subcommand\s+(\S+)/', $doc, $m ) ? $m[1] : $candidate->getName();
				if ( $label === $sub ) {
					$method = $candidate;
				}
			}
			if ( ! $method ) {
				self::error( sprintf( "'%s' is not a registered subcommand of '%s'. See 'wp help %s' for available subcommands.", $sub, $name, $name ) );
			}
			$method->invoke( $class->newInstance(), $positional, $assoc );
		}
	}
}

namespace WP_CLI\Utils {

	/** Mirrors WP_CLI\Utils\get_flag_value() (php/utils.php). */
	function get_flag_value( $assoc_args, $flag, $default = null ) {
		return isset( $assoc_args[ $flag ] ) ? $assoc_args[ $flag ] : $default;
	}

	/** Cell text as WP_CLI\Formatter renders it (arrays and objects as JSON). */
	function standin_cell( $value ) {
		if ( is_bool( $value ) ) {
			return $value ? 'true' : 'false';
		}
		if ( is_array( $value ) || is_object( $value ) ) {
			return json_encode( $value );
		}
		return (string) $value;
	}

	/**
	 * Mirrors WP_CLI\Utils\format_items() (php/utils.php → WP_CLI\Formatter): table (ASCII
	 * borders, as WP-CLI prints on a terminal), json, csv, yaml.
	 */
	function format_items( $format, $items, $fields ) {
		$fields = is_string( $fields ) ? explode( ',', $fields ) : $fields;
		$rows   = array();
		foreach ( $items as $item ) {
			$item = (array) $item;
			$row  = array();
			foreach ( $fields as $field ) {
				$row[ $field ] = $item[ $field ] ?? null;
			}
			$rows[] = $row;
		}
		switch ( $format ) {
			case 'json':
				fwrite( STDOUT, json_encode( $rows ) . "\n" );
				break;
			case 'csv':
				fputcsv( STDOUT, $fields );
				foreach ( $rows as $row ) {
					fputcsv( STDOUT, array_map( __NAMESPACE__ . '\\standin_cell', array_values( $row ) ) );
				}
				break;
			case 'yaml':
				$out = "---\n";
				foreach ( $rows as $row ) {
					$first = true;
					foreach ( $row as $field => $value ) {
						$text = standin_cell( $value );
						if ( '' === $text || preg_match( '/[:#\-\[\]{}",\'\n]|^\s|\s$/', $text ) ) {
							$text = json_encode( $text );
						}
						$out  .= ( $first ? '- ' : '  ' ) . $field . ': ' . $text . "\n";
						$first = false;
					}
				}
				fwrite( STDOUT, $out );
				break;
			case 'table':
				$widths = array();
				foreach ( $fields as $field ) {
					$widths[ $field ] = strlen( $field );
				}
				$cells = array();
				foreach ( $rows as $row ) {
					$line = array();
					foreach ( $row as $field => $value ) {
						$text             = str_replace( array( "\r", "\n", "\t" ), ' ', standin_cell( $value ) );
						$line[ $field ]   = $text;
						$widths[ $field ] = max( $widths[ $field ], mb_strlen( $text ) );
					}
					$cells[] = $line;
				}
				$border = '+';
				foreach ( $widths as $w ) {
					$border .= str_repeat( '-', $w + 2 ) . '+';
				}
				$render = function ( $line ) use ( $widths ) {
					$s = '|';
					foreach ( $widths as $field => $w ) {
						$text = (string) $line[ $field ];
						$s   .= ' ' . $text . str_repeat( ' ', $w - mb_strlen( $text ) ) . ' |';
					}
					return $s;
				};
				$out = $border . "\n" . $render( array_combine( $fields, $fields ) ) . "\n" . $border . "\n";
				foreach ( $cells as $line ) {
					$out .= $render( $line ) . "\n";
				}
				$out .= $border . "\n";
				fwrite( STDOUT, $out );
				break;
			default:
				\WP_CLI::error( sprintf( 'Invalid format: %s', $format ) );
		}
	}

	/** Mirrors the cli\progress\Bar that WP_CLI\Utils\make_progress_bar() returns (php/utils.php). */
	class Standin_Progress_Bar {
		/** @var string */
		public $message;
		/** @var int */
		public $total;
		/** @var int */
		public $current = 0;

		/** Constructor. */
		public function __construct( $message, $total ) {
			$this->message = $message;
			$this->total   = (int) $total;
		}
		/** Mirrors cli\Progress::tick(). */
		public function tick( $increment = 1, $msg = null ) {
			$this->current += $increment;
		}
		/** Mirrors cli\Progress::finish(): the stand-in reports the ticks on STDERR. */
		public function finish() {
			fwrite( STDERR, sprintf( "%s  %d/%d\n", $this->message, $this->current, $this->total ) );
		}
	}

	/** Mirrors WP_CLI\Utils\make_progress_bar() (php/utils.php). */
	function make_progress_bar( $message, $count, $interval = 100 ) {
		return new Standin_Progress_Bar( $message, $count );
	}
}
