/**
 * WooSync log: event detail modal, copy buttons, confirmations. No dependencies.
 */
( function () {
	'use strict';

	var cfg = window.woosyncLog || {};
	var i18n = cfg.i18n || {};
	var modal = null;
	var lastFocus = null;

	function buildModal() {
		if ( modal ) {
			return modal;
		}
		modal = document.createElement( 'div' );
		modal.className = 'woosync-modal';
		modal.hidden = true;
		modal.innerHTML =
			'<div class="woosync-modal-backdrop" data-close="1"></div>' +
			'<div class="woosync-modal-dialog" role="dialog" aria-modal="true" aria-labelledby="woosync-modal-title" tabindex="-1">' +
			'<div class="woosync-modal-header"><h2 id="woosync-modal-title"></h2>' +
			'<button type="button" class="button-link woosync-modal-close" data-close="1">' +
			'<span class="dashicons dashicons-no-alt" aria-hidden="true"></span><span class="screen-reader-text"></span></button></div>' +
			'<div class="woosync-modal-content"></div></div>';
		modal.querySelector( '#woosync-modal-title' ).textContent = i18n.title || 'Event details';
		modal.querySelector( '.woosync-modal-close .screen-reader-text' ).textContent = i18n.close || 'Close';
		document.body.appendChild( modal );
		modal.addEventListener( 'click', function ( e ) {
			if ( e.target.closest( '[data-close]' ) ) {
				closeModal();
			}
		} );
		return modal;
	}

	function closeModal() {
		if ( ! modal || modal.hidden ) {
			return;
		}
		modal.hidden = true;
		document.body.classList.remove( 'woosync-modal-open' );
		if ( lastFocus ) {
			lastFocus.focus();
		}
	}

	function setMessage( content, text, isError ) {
		content.textContent = '';
		var p = document.createElement( 'p' );
		p.className = isError ? 'notice notice-error woosync-modal-error' : 'woosync-modal-loading';
		p.textContent = text;
		content.appendChild( p );
	}

	function openEvent( id ) {
		var m = buildModal();
		var content = m.querySelector( '.woosync-modal-content' );
		lastFocus = document.activeElement;
		setMessage( content, i18n.loading || 'Loading…', false );
		m.hidden = false;
		document.body.classList.add( 'woosync-modal-open' );
		m.querySelector( '.woosync-modal-dialog' ).focus();
		var url = cfg.ajaxUrl + '?action=' + encodeURIComponent( cfg.action ) +
			'&_ajax_nonce=' + encodeURIComponent( cfg.nonce ) + '&event=' + encodeURIComponent( id );
		fetch( url, { credentials: 'same-origin', headers: { Accept: 'application/json' } } )
			.then( function ( r ) {
				return r.json();
			} )
			.then( function ( res ) {
				if ( res && res.success && res.data && res.data.html ) {
					// Server-rendered and escaped by Log_Page::detail_html().
					content.innerHTML = res.data.html;
					// Actions in the modal return to this list (filters kept), not to admin-ajax.php.
					content.querySelectorAll( 'input[name="_wp_http_referer"]' ).forEach( function ( input ) {
						input.value = window.location.pathname + window.location.search;
					} );
					m.setAttribute( 'data-event', id );
				} else {
					setMessage( content, ( res && res.data && res.data.message ) || i18n.error || 'Error', true );
				}
			} )
			.catch( function () {
				setMessage( content, i18n.error || 'Error', true );
			} );
	}

	function copyText( text, button ) {
		function done() {
			var old = i18n.copy || 'Copy';
			button.textContent = i18n.copied || 'Copied';
			button.classList.add( 'woosync-copied' );
			window.setTimeout( function () {
				button.textContent = old;
				button.classList.remove( 'woosync-copied' );
			}, 1500 );
		}
		function fallback() {
			var ta = document.createElement( 'textarea' );
			ta.value = text;
			ta.setAttribute( 'readonly', '' );
			ta.style.position = 'fixed';
			ta.style.left = '-9999px';
			document.body.appendChild( ta );
			ta.select();
			try {
				document.execCommand( 'copy' );
			} catch ( e ) {}
			document.body.removeChild( ta );
			done();
		}
		if ( navigator.clipboard && window.isSecureContext ) {
			navigator.clipboard.writeText( text ).then( done, fallback );
		} else {
			fallback();
		}
	}

	document.addEventListener( 'click', function ( e ) {
		var view = e.target.closest( 'a.woosync-view' );
		if ( view && view.getAttribute( 'data-event' ) && ! e.ctrlKey && ! e.metaKey && ! e.shiftKey && e.button === 0 ) {
			e.preventDefault();
			openEvent( view.getAttribute( 'data-event' ) );
			return;
		}
		var copy = e.target.closest( '.woosync-copy' );
		if ( copy ) {
			var body = copy.closest( '.woosync-body' );
			var raw = body && body.querySelector( '.woosync-raw' );
			if ( raw ) {
				copyText( raw.textContent, copy );
			}
			return;
		}
		var toggle = e.target.closest( '.woosync-toggle-raw' );
		if ( toggle ) {
			var block = toggle.closest( '.woosync-body' );
			var showRaw = toggle.getAttribute( 'aria-pressed' ) !== 'true';
			block.querySelector( '.woosync-raw' ).hidden = ! showRaw;
			block.querySelector( '.woosync-pretty' ).hidden = showRaw;
			toggle.setAttribute( 'aria-pressed', showRaw ? 'true' : 'false' );
		}
	} );

	document.addEventListener( 'submit', function ( e ) {
		var button = e.target.querySelector( '[data-confirm]' );
		if ( button && ! window.confirm( button.getAttribute( 'data-confirm' ) ) ) {
			e.preventDefault();
			return;
		}
		var submit = e.target.querySelector( 'button[type="submit"][data-woosync-action]' );
		if ( submit ) {
			// Avoid double submissions while the server waits for the delivery result.
			window.setTimeout( function () {
				submit.disabled = true;
				submit.classList.add( 'updating-message' );
			}, 0 );
		}
	} );

	document.addEventListener( 'keydown', function ( e ) {
		if ( e.key === 'Escape' ) {
			closeModal();
		}
	} );
} )();
