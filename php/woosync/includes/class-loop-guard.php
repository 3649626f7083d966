<?php
/**
 * Loop prevention: changes that came from the CRM are not sent back to it.
 *
 * @package Woosync
 */

namespace Woosync;

defined( 'ABSPATH' ) || exit;

/**
 * Knows when the current code runs on behalf of the CRM: inside woosync_suppress(), or during a
 * REST request authenticated as the CRM user chosen in the settings.
 */
class Loop_Guard {

	/**
	 * Nesting depth of woosync_suppress() calls.
	 *
	 * @var int
	 */
	private $depth = 0;

	/**
	 * Settings.
	 *
	 * @var Settings
	 */
	private $settings;

	/**
	 * Constructor.
	 *
	 * @param Settings $settings Settings.
	 */
	public function __construct( Settings $settings ) {
		$this->settings = $settings;
	}

	/**
	 * Runs $callback with dispatching suppressed.
	 *
	 * @param callable $callback Code to run.
	 * @return mixed
	 */
	public function suppress( callable $callback ) {
		++$this->depth;
		try {
			return $callback();
		} finally {
			--$this->depth;
		}
	}

	/**
	 * Whether changes made now must not be dispatched.
	 *
	 * @return bool
	 */
	public function is_suppressed() {
		return $this->depth > 0 || $this->is_crm_request();
	}

	/**
	 * Whether this is a REST request by the configured CRM user.
	 *
	 * @return bool
	 */
	public function is_crm_request() {
		$crm_user = (int) $this->settings->get( 'crm_user' );
		$is_crm   = $crm_user > 0
			&& defined( 'REST_REQUEST' ) && REST_REQUEST
			&& get_current_user_id() === $crm_user;

		/**
		 * Whether the current request applies CRM-originated changes (which are then not echoed).
		 *
		 * @param bool $is_crm   Default decision.
		 * @param int  $crm_user Configured CRM user id (0: none).
		 */
		return (bool) apply_filters( 'woosync_is_crm_request', $is_crm, $crm_user );
	}
}
