use super::sqlite::{
    APPLICATION_ID, KEY_BUSY_SQL, KEY_HEAD_SQL, KEY_NEWEST_SQL, OLDEST_OPEN_SQL, SCHEMA, SCHEMA_V2,
    SCHEMA_V3, SCHEMA_V4,
};
use super::*;
use rusqlite::params;
use rusqlite::Connection;
use std::path::PathBuf;
use std::time::Instant;

/// A fresh outbox path for one test (its directory removed first).
fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("woosync-test-{}-{}", std::process::id(), name));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("sub").join("outbox.sqlite")
}

/// Names of the indexes that match an SQL condition on `sqlite_master`.
fn index_names(c: &Connection, condition: &str) -> Vec<String> {
    c.prepare(&format!(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND {condition}"
    ))
    .unwrap()
    .query_map([], |r| r.get(0))
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// SQLite's query plan of a statement, its steps joined by " | " (parameters left unbound).
fn query_plan(c: &Connection, sql: &str) -> String {
    let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let mut rows = st.raw_query();
    let mut steps = Vec::new();
    while let Some(r) = rows.next().unwrap() {
        steps.push(r.get::<_, String>(3).unwrap());
    }
    steps.join(" | ")
}

fn ev<'a>(topic: &'a str, key: Option<&'a str>, coalesce: bool) -> NewEvent<'a> {
    NewEvent {
        topic,
        key,
        coalesce,
        endpoints: None,
        data: "{\"a\":1}",
        max_body_bytes: 1 << 20,
        raw_body: None,
        headers: None,
    }
}

mod unit {
    use super::*;

    fn default_ep(url: &str) -> DefaultEndpoint {
        DefaultEndpoint {
            url: url.into(),
            secret: String::new(),
            retry_delays: "1,2".into(),
            timeout: 5.0,
            source: String::new(),
        }
    }

    impl Outbox {
        pub(super) fn record_default_endpoint_plain(&mut self, d: &DefaultEndpoint) -> Result<()> {
            self.record_default_endpoint(d, None)
        }
    }

    /// A sender's outbox for one test, with the default endpoint; the endpoint's id.
    fn sender_with_endpoint(name: &str) -> (Outbox, i64) {
        let mut ob = Outbox::open(&tmp(name), Role::Sender).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        (ob, ep)
    }

    fn put(ob: &mut Outbox, e: &NewEvent<'_>) -> String {
        let id = ob.enqueue(e).unwrap();
        ob.route_new(1000).unwrap();
        id
    }

    fn finish(ob: &mut Outbox, c: &Claimed, d: Decision) {
        ob.record(
            &[Finished {
                delivery_id: c.delivery_id,
                endpoint_id: c.endpoint_id,
                key: c.key.clone(),
                started_at: event::now(),
                duration_ms: 1.0,
                http_status: Some(200),
                error_class: None,
                error: None,
                response: b"ok".to_vec(),
                delivery_uuid: "u".into(),
                endpoint_failure: !matches!(d, Decision::Delivered),
                breaker_pause: 5.0,
                after_outage: false,
                decision: d,
            }],
            "me",
        )
        .unwrap();
    }

    #[test]
    fn creates_schema_and_marks_file() {
        let p = tmp("schema");
        let ob = Outbox::open(&p, Role::Request).unwrap();
        let app: i32 = ob
            .conn()
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
        let mode: String = ob
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(ob);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        Outbox::open(&p, Role::Sender).unwrap(); // reopen
    }

    #[test]
    fn refuses_foreign_and_garbage_files_untouched() {
        let p = tmp("foreign");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"hello, not a database at all").unwrap();
        let private = |f: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        private(&p);
        let e = Outbox::open(&p, Role::Request).err().unwrap();
        assert!(e.to_string().contains("not a woosync outbox"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"hello, not a database at all");

        let q = p.with_file_name("other.sqlite");
        {
            let c = Connection::open(&q).unwrap();
            c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
                .unwrap();
        }
        private(&q);
        let before = std::fs::read(&q).unwrap();
        let e = Outbox::open(&q, Role::Request).err().unwrap();
        assert!(e.to_string().contains("another application"), "{e}");
        assert_eq!(std::fs::read(&q).unwrap(), before);
    }

    #[test]
    fn refuses_newer_schema() {
        let p = tmp("newer");
        drop(Outbox::open(&p, Role::Request).unwrap());
        Connection::open(&p)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let e = Outbox::open(&p, Role::Request).err().unwrap();
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn mirrored_webhook_endpoint_gets_only_events_named_for_it() {
        let p = tmp("mirrored");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("")).unwrap();
        let plain = EndpointConfig {
            url: "http://127.0.0.1:9/crm".into(),
            ..Default::default()
        };
        ob.save_endpoint("crm", &plain, None).unwrap();
        let mirror = EndpointConfig {
            url: "http://127.0.0.1:9/wc".into(),
            topics: vec!["order.created".into()],
            wc_webhook_id: Some(7),
            ..Default::default()
        };
        ob.save_endpoint("wc-webhook-7", &mirror, None).unwrap();
        // The general fan-out (no endpoints named) skips the mirror although its topic matches.
        put(&mut ob, &ev("order.created", Some("order:1"), false));
        let mut named = ev("order.created", Some("order:1"), false);
        named.endpoints = Some(vec!["wc-webhook-7".into()]);
        put(&mut ob, &named);
        let rows = ob
            .events(&EventFilter {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        let mut got: Vec<String> = rows.iter().filter_map(|r| r.endpoint.clone()).collect();
        got.sort();
        assert_eq!(
            got,
            vec!["crm".to_string(), "wc-webhook-7".to_string()],
            "{rows:?}"
        );
    }

    #[test]
    fn unrouted_without_endpoint_then_routed_by_retry() {
        let p = tmp("unrouted");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("")).unwrap();
        let id = put(&mut ob, &ev("a.b", None, false));
        let st = ob.status().unwrap();
        assert_eq!((st.unrouted, st.pending()), (1, 0));
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        assert_eq!(ob.retry_event(&id).unwrap(), Some(true));
        let st = ob.status().unwrap();
        assert_eq!((st.unrouted, st.pending()), (0, 1));
        assert_eq!(
            ob.retry_event("evt_01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap(),
            None
        );
    }

    #[test]
    fn per_key_order_and_promotion() {
        let p = tmp("order");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        for _ in 0..3 {
            put(
                &mut ob,
                &ev("product.stock_updated", Some("product:1"), false),
            );
        }
        put(
            &mut ob,
            &ev("product.stock_updated", Some("product:2"), false),
        );
        put(&mut ob, &ev("a.b", None, false));
        let now = event::now() + 1.0;
        let c = ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap();
        assert_eq!(
            c.len(),
            3,
            "heads of product:1, product:2 and the keyless event"
        );
        let head1 = c
            .iter()
            .find(|x| x.key.as_deref() == Some("product:1"))
            .unwrap()
            .clone();
        assert!(String::from_utf8_lossy(&head1.body).contains("\"sequence\":1"));
        assert!(ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap().is_empty());
        // A retry keeps the head: nothing else of product:1 becomes due.
        finish(&mut ob, &head1, Decision::RetryIn(-1.0));
        let again = ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].delivery_id, head1.delivery_id);
        assert_eq!(again[0].attempt, 2);
        finish(&mut ob, &again[0], Decision::Dead);
        let next = ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap();
        assert_eq!(next.len(), 1);
        assert!(String::from_utf8_lossy(&next[0].body).contains("\"sequence\":2"));
        let st = ob.status().unwrap();
        assert_eq!((st.dead, st.in_flight, st.queued), (1, 3, 1));
    }

    /// An older event of a key put back while a newer one is in flight waits for it, and goes
    /// next.
    #[test]
    fn retried_old_event_waits_for_the_key_in_flight() {
        let (mut ob, ep) = sender_with_endpoint("retry-behind");
        let first = put(&mut ob, &ev("a.b", Some("k"), false));
        let second = put(&mut ob, &ev("a.b", Some("k"), false));
        let now = event::now() + 1.0;
        let c = ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap();
        assert_eq!(c.len(), 1);
        finish(&mut ob, &c[0], Decision::Delivered);
        let c2 = ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap();
        assert_eq!(c2[0].event_id, second);
        assert_eq!(ob.retry_event(&first).unwrap(), Some(true));
        assert!(ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap().is_empty());
        finish(&mut ob, &c2[0], Decision::Delivered);
        let c3 = ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap();
        assert_eq!(c3.len(), 1);
        assert_eq!(c3[0].event_id, first);
        assert!(ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap().is_empty());
    }

    #[test]
    fn coalescing_supersedes_waiting_not_in_flight() {
        let p = tmp("coalesce");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        put(&mut ob, &ev("product.stock_updated", Some("p:1"), true));
        let now = event::now() + 1.0;
        let inflight = ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap();
        assert_eq!(inflight.len(), 1);
        for _ in 0..5 {
            put(&mut ob, &ev("product.stock_updated", Some("p:1"), true));
        }
        put(&mut ob, &ev("product.deleted", Some("p:1"), true));
        let st = ob.status().unwrap();
        assert_eq!(st.superseded, 4);
        assert_eq!(st.pending(), 3); // in flight + newest stock + deleted
        finish(&mut ob, &inflight[0], Decision::Delivered);
        let next = ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap();
        assert_eq!(next.len(), 1);
        assert!(String::from_utf8_lossy(&next[0].body).contains("\"sequence\":6"));
    }

    #[test]
    fn dead_holder_leases_are_taken_over() {
        let p = tmp("lease");
        let mut ob = Outbox::open(&p, Role::Sender).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        put(&mut ob, &ev("a.b", Some("k"), false));
        put(&mut ob, &ev("a.b", None, false));
        let now = event::now() + 1.0;
        assert_eq!(ob.claim(&[(ep, 10, 100.0)], "ghost", now).unwrap().len(), 2);
        assert_eq!(
            ob.take_over_leases("me", Some(now), &|_| true).unwrap(),
            0,
            "alive and leased"
        );
        assert_eq!(
            ob.take_over_leases("me", Some(now + 101.0), &|_| true)
                .unwrap(),
            2,
            "expired"
        );
        let c = ob.claim(&[(ep, 10, 100.0)], "ghost", now + 101.0).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            ob.take_over_leases("me", Some(now), &|_| false).unwrap(),
            2,
            "dead holder"
        );
        let st = ob.status().unwrap();
        assert_eq!((st.ready, st.in_flight), (2, 0));
        let d = ob.event(&c[0].event_id).unwrap().unwrap();
        assert!(d
            .attempts
            .iter()
            .any(|a| a.error_class.as_deref() == Some("abandoned")));
    }

    #[test]
    fn gone_disables_endpoint_and_url_change_reenables() {
        let p = tmp("gone");
        let mut ob = Outbox::open(&p, Role::Sender).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        put(&mut ob, &ev("a.b", None, false));
        let c = ob
            .claim(&[(ep, 10, 100.0)], "me", event::now() + 1.0)
            .unwrap();
        finish(
            &mut ob,
            &c[0],
            Decision::DeadAndDisable("HTTP 410 Gone".into()),
        );
        put(&mut ob, &ev("a.b", None, false));
        let e = &ob.endpoints().unwrap()[0];
        assert!(!e.sendable() && e.disabled_reason.is_some());
        assert_eq!(ob.status().unwrap().pending(), 1);
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap(); // same url: stays disabled
        assert!(!ob.endpoints().unwrap()[0].sendable());
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/y"))
            .unwrap();
        assert!(ob.endpoints().unwrap()[0].sendable());
    }

    #[test]
    fn replay_and_retry_dead() {
        let (mut ob, ep) = sender_with_endpoint("replay");
        let id = put(&mut ob, &ev("a.b", Some("k"), false));
        let now = event::now() + 1.0;
        let c = ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap();
        finish(&mut ob, &c[0], Decision::Delivered);
        assert_eq!(ob.retry_event(&id).unwrap(), Some(true));
        let c = ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap();
        assert_eq!(c[0].event_id, id);
        assert_eq!(c[0].attempt, 1);
        finish(&mut ob, &c[0], Decision::Dead);
        assert_eq!(ob.retry_dead(None).unwrap(), 1);
        assert_eq!(ob.retry_dead(Some("default")).unwrap(), 0);
        let d = ob.event(&id).unwrap().unwrap();
        assert_eq!(d.attempts.len(), 2);
        assert_eq!(d.deliveries[0].state, state::READY);
    }

    #[test]
    fn erase_key_deletes_finished_events_and_keeps_pending() {
        let p = tmp("erase");
        let mut ob = Outbox::open(&p, Role::Sender).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        let data = "{\"email\":\"a@example.test\"}";
        let ev = |k| NewEvent {
            topic: "customer.updated",
            key: Some(k),
            coalesce: false,
            endpoints: None,
            data,
            max_body_bytes: 1 << 20,
            raw_body: None,
            headers: None,
        };
        let first = put(&mut ob, &ev("customer:1"));
        let other = put(&mut ob, &ev("customer:2"));
        let now = event::now() + 1.0;
        for c in ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap() {
            finish(&mut ob, &c, Decision::Delivered);
        }
        let waiting = put(&mut ob, &ev("customer:1"));
        assert_eq!(ob.erase_key("customer:1").unwrap(), (1, 1));
        assert!(ob.event(&first).unwrap().is_none());
        assert!(
            ob.event(&waiting).unwrap().is_some(),
            "pending events stay until delivered"
        );
        assert!(ob.event(&other).unwrap().is_some(), "other keys untouched");
        // Deliver the waiting one; it is now the newest event: erased in place.
        for c in ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap() {
            finish(&mut ob, &c, Decision::Delivered);
        }
        assert_eq!(ob.erase_key("customer:1").unwrap(), (1, 0));
        let kept = ob.event(&waiting).unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&kept.body).contains("a@example.test"));
        assert!(kept.key.is_none() && kept.attempts.is_empty());
        // New events still get routed after the erasure.
        put(&mut ob, &ev("customer:3"));
        assert_eq!(ob.status().unwrap().pending(), 1);
        assert_eq!(ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap().len(), 1);
    }

    #[test]
    fn payload_limit_keeps_earlier_events() {
        let p = tmp("limit");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        put(&mut ob, &ev("a.b", Some("k"), false));
        let big = "x".repeat(2000);
        let e = ob
            .enqueue(&NewEvent {
                data: &big,
                max_body_bytes: 1000,
                ..ev("a.b", Some("k"), false)
            })
            .unwrap_err();
        assert!(e.to_string().contains("too large"));
        assert_eq!(ob.status().unwrap().pending(), 1);
        let id = put(&mut ob, &ev("a.b", Some("k"), false));
        let d = ob.event(&id).unwrap().unwrap();
        assert_eq!(
            d.seq, 2,
            "a rejected dispatch does not consume a sequence number"
        );
    }

    #[test]
    fn events_listing_filters() {
        let p = tmp("list");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        for i in 0..5 {
            let k = format!("k{}", i % 2);
            put(&mut ob, &ev("order.created", Some(&k), false));
        }
        let all = ob
            .events(&EventFilter {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 5);
        assert!(all[0].created_at >= all[4].created_at);
        let k1 = ob
            .events(&EventFilter {
                key: Some("k1".into()),
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(k1.len(), 2);
        let pending = ob
            .events(&EventFilter {
                state: Some(state::READY),
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(pending.len(), 2);
    }
}

mod event_ids {
    use super::*;

    fn dispatch(ob: &mut Outbox, key: Option<&str>, data: &str) -> String {
        ob.enqueue(&NewEvent {
            data,
            ..ev("order.updated", key, false)
        })
        .unwrap()
    }

    /// A new outbox stores no index of event ids: each id carries its row's rowid, the body
    /// names the event by that id, and lookups find it by the rowid without a scan.
    #[test]
    fn ids_carry_their_rowid_and_need_no_index() {
        let p = tmp("ids-carry");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        let ids: Vec<String> = (0..5)
            .map(|i| dispatch(&mut ob, Some("order:7"), &format!("{{\"n\":{i}}}")))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(event::is_event_id(id), "{id}");
            let (rowid, stored_id, body): (i64, String, Vec<u8>) = ob
                .conn()
                .query_row(
                    "SELECT id, event_id, body FROM events WHERE event_id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            assert_eq!(&stored_id, id);
            assert_eq!(event::rowid_in(id), Some(rowid));
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["id"], id.as_str(), "the envelope names the stored id");
            assert_eq!(v["sequence"], (i + 1) as i64);
            assert_eq!(v["data"]["n"], i as i64);
            let d = ob.event(id).unwrap().unwrap();
            assert_eq!((d.event_id.as_str(), d.seq), (id.as_str(), (i + 1) as i64));
        }
        // the same rowid with another random part, or an id of another shape: not found
        let other =
            event::with_rowid(&event::new_event_id(), event::rowid_in(&ids[0]).unwrap()).unwrap();
        assert!(ob.event(&other).unwrap().is_none());
        assert!(ob.event("evt_nope").unwrap().is_none());
        assert_eq!(ob.retry_event(&other).unwrap(), None);
        // no index on the ids of dispatched events; only the foreign ones are indexed
        assert_eq!(
            index_names(ob.conn(), "tbl_name = 'events'"),
            ["events_foreign_id"]
        );
        let text = query_plan(
            ob.conn(),
            "SELECT id FROM events WHERE id = ?1 AND event_id = ?2
             UNION ALL SELECT id FROM events WHERE event_id = ?2 AND foreign_id = 1 LIMIT 1",
        );
        assert!(text.contains("events_foreign_id"), "{text}");
        assert!(!text.contains("SCAN"), "{text}");
    }

    /// Events moved in from another outbox keep their ids and are found through the index of
    /// foreign ids.
    #[test]
    fn moved_events_keep_their_ids_and_are_found() {
        let (a, b) = (tmp("ids-from"), tmp("ids-to"));
        let mut src = Outbox::open(&a, Role::Request).unwrap();
        let ids: Vec<String> = (0..3)
            .map(|i| dispatch(&mut src, Some("k"), &format!("[{i}]")))
            .collect();
        let mut dst = Outbox::open(&b, Role::Request).unwrap();
        let here = dispatch(&mut dst, Some("k"), "[9]");
        let from = a.display().to_string();
        let to = b.display().to_string();
        while !super::super::migrate::step(&mut src, &mut dst, &from, &to, 100)
            .unwrap()
            .done
        {}
        for id in ids.iter().chain([&here]) {
            let d = dst.event(id).unwrap().unwrap();
            assert_eq!(&d.event_id, id);
        }
        let foreign: i64 = dst
            .conn()
            .query_row(
                "SELECT count(*) FROM events WHERE foreign_id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(foreign, 3);
        // dispatched after the move: a carried rowid again
        let next = dispatch(&mut dst, Some("k"), "[10]");
        let rowid: i64 = dst
            .conn()
            .query_row("SELECT max(id) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(event::rowid_in(&next), Some(rowid));
        assert_eq!(dst.event(&next).unwrap().unwrap().event_id, next);
    }

    /// An outbox created before schema 3 keeps its unique index of ids and finds old and new
    /// events through it.
    #[test]
    fn outbox_from_schema_2_keeps_finding_events_by_id() {
        let p = tmp("ids-v2");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;")
                .unwrap();
            let v1 = SCHEMA.replace("event_id TEXT NOT NULL,", "event_id TEXT NOT NULL UNIQUE,");
            assert_ne!(v1, SCHEMA);
            c.execute_batch(&v1).unwrap();
            c.execute_batch(SCHEMA_V2).unwrap();
            c.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 2;"
            ))
            .unwrap();
            c.execute(
                "INSERT INTO events(event_id, topic, key, seq, created_at, data_offset, body)
                 VALUES ('evt_01KB0000000000000000000000', 'a.b', 'k', 1, 1.0, 0, x'7b7d')",
                [],
            )
            .unwrap();
            c.execute("INSERT INTO key_seq(key, seq) VALUES ('k', 1)", [])
                .unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        let version: i32 = ob
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 4);
        // Schema 4: the open deliveries of a key indexed by state as well, in place of the old index.
        assert_eq!(
            index_names(ob.conn(), "name LIKE 'deliveries_key%'"),
            ["deliveries_key_state"]
        );
        let new = dispatch(&mut ob, Some("k"), "{}");
        assert_eq!(ob.event(&new).unwrap().unwrap().seq, 2);
        let old = ob.event("evt_01KB0000000000000000000000").unwrap().unwrap();
        assert_eq!(old.seq, 1);
        // its ids stay unique by index
        let dup = ob.conn().execute(
            "INSERT INTO events(event_id, topic, seq, created_at, data_offset, body) VALUES (?1, 'a', 0, 1, 0, x'00')",
            [&new],
        );
        assert!(dup.is_err());
    }
}

mod perf {
    use super::*;
    /// `cargo test --release --lib perf -- --ignored --nocapture`: rough enqueue cost.
    #[test]
    #[ignore]
    fn enqueue_cost() {
        let p = std::env::temp_dir()
            .join(format!("woosync-perf-{}", std::process::id()))
            .join("o.sqlite");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&DefaultEndpoint {
            url: "http://127.0.0.1:9/".into(),
            secret: String::new(),
            retry_delays: "1".into(),
            timeout: 5.0,
            source: String::new(),
        })
        .unwrap();
        let data = r#"{"id":1,"total":"10.00","items":[{"sku":"A","q":1}]}"#;
        for (label, key) in [
            ("keyed", Some("order:1")),
            ("keyless", None),
            ("keyed-again", Some("order:1")),
        ] {
            let mut t = Vec::new();
            for i in 0..5000 {
                let k = key.map(|k: &str| format!("{k}{}", i % 50));
                let s = Instant::now();
                ob.enqueue(&NewEvent {
                    topic: "order.created",
                    key: k.as_deref(),
                    coalesce: false,
                    endpoints: None,
                    data,
                    max_body_bytes: 1 << 20,
                    raw_body: None,
                    headers: None,
                })
                .unwrap();
                t.push(s.elapsed().as_secs_f64() * 1e6);
                if i % 100 == 99 {
                    ob.checkpoint().unwrap();
                }
            }
            t.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!("{label}: p50 {:.1}us p99 {:.1}us", t[2500], t[4950]);
        }
        let c = Connection::open(&p).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE IF NOT EXISTS bare(id INTEGER PRIMARY KEY, topic TEXT, k TEXT, body BLOB, created REAL)").unwrap();
        let mut st = c
            .prepare("INSERT INTO bare(topic,k,body,created) VALUES (?1,?2,?3,?4)")
            .unwrap();
        let mut t = Vec::new();
        for _ in 0..5000 {
            let s = Instant::now();
            st.execute(params!["order.created", "order:1", data.as_bytes(), 1.0])
                .unwrap();
            t.push(s.elapsed().as_secs_f64() * 1e6);
        }
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("bare: p50 {:.1}us p99 {:.1}us", t[2500], t[4950]);
    }
}

mod reprepare {
    use super::*;

    /// Hot statements must not be re-prepared on every execution (it happens when the planner
    /// makes a plan depend on a bound value).
    #[test]
    fn hot_statements_are_not_reprepared() {
        let p = std::env::temp_dir()
            .join(format!("woosync-reprep-{}", std::process::id()))
            .join("o.sqlite");
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
        let mut ob = Outbox::open(&p, Role::Sender).unwrap();
        ob.record_default_endpoint(
            &DefaultEndpoint {
                url: "http://127.0.0.1:9/".into(),
                secret: String::new(),
                retry_delays: "1".into(),
                timeout: 5.0,
                source: String::new(),
            },
            None,
        )
        .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        for round in 0..20 {
            for i in 0..10 {
                let k = format!("k{}", (round * 10 + i) % 7);
                ob.enqueue(&NewEvent {
                    topic: "a.b",
                    key: Some(&k),
                    coalesce: i % 2 == 0,
                    endpoints: None,
                    data: "{}",
                    max_body_bytes: 1 << 20,
                    raw_body: None,
                    headers: None,
                })
                .unwrap();
            }
            let (claimed, _, _) = ob.cycle(&[], 100, &[(ep, 4, 20.0)], 4, "me").unwrap();
            let done: Vec<Finished> = claimed
                .iter()
                .map(|c| Finished {
                    delivery_id: c.delivery_id,
                    endpoint_id: c.endpoint_id,
                    key: c.key.clone(),
                    started_at: event::now(),
                    duration_ms: 1.0,
                    http_status: Some(if round % 3 == 0 { 500 } else { 200 }),
                    error_class: None,
                    error: None,
                    response: vec![],
                    delivery_uuid: "u".into(),
                    decision: if round % 3 == 0 {
                        Decision::RetryIn(0.0)
                    } else {
                        Decision::Delivered
                    },
                    endpoint_failure: round % 3 == 0,
                    breaker_pause: 1.0,
                    after_outage: false,
                })
                .collect();
            ob.cycle(&done, 100, &[(ep, 4, 20.0)], 0, "me").unwrap();
            ob.next_due(&[ep]).unwrap();
        }
        let db = unsafe { ob.conn().handle() };
        let mut bad = Vec::new();
        let mut stmt = unsafe { rusqlite::ffi::sqlite3_next_stmt(db, std::ptr::null_mut()) };
        while !stmt.is_null() {
            let n = unsafe {
                rusqlite::ffi::sqlite3_stmt_status(
                    stmt,
                    rusqlite::ffi::SQLITE_STMTSTATUS_REPREPARE,
                    0,
                )
            };
            let runs = unsafe {
                rusqlite::ffi::sqlite3_stmt_status(stmt, rusqlite::ffi::SQLITE_STMTSTATUS_RUN, 0)
            };
            let sql = unsafe { std::ffi::CStr::from_ptr(rusqlite::ffi::sqlite3_sql(stmt)) }
                .to_string_lossy()
                .into_owned();
            if n > 2 {
                bad.push(format!(
                    "{n} reprepares / {runs} runs: {}",
                    sql.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
            stmt = unsafe { rusqlite::ffi::sqlite3_next_stmt(db, stmt) };
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}

mod plans {
    use super::*;

    /// Status must stay cheap with millions of rows: no query of it may sort or scan open rows.
    #[test]
    fn oldest_pending_uses_the_open_index_without_sorting() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        let text = query_plan(&c, OLDEST_OPEN_SQL);
        assert!(text.contains("deliveries_open"), "{text}");
        assert!(!text.contains("TEMP B-TREE"), "{text}");
    }

    /// A promotion and the routing of a keyed event read a few index entries of the key, never
    /// its open deliveries' rows (a deep backlog on one key made each of them read all).
    #[test]
    fn key_queries_are_index_lookups() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(&format!("{SCHEMA}{SCHEMA_V2}{SCHEMA_V3}{SCHEMA_V4}"))
            .unwrap();
        for sql in [KEY_BUSY_SQL, KEY_HEAD_SQL, KEY_NEWEST_SQL] {
            let text = query_plan(&c, sql);
            let seek = "COVERING INDEX deliveries_key_state (endpoint_id=? AND key=? AND state=?)";
            assert!(text.contains(seek), "{text}");
            assert!(!text.contains("state<"), "{text}");
            assert!(!text.contains("TEMP B-TREE"), "{text}");
        }
    }
}

mod breaker {
    use super::*;

    #[test]
    fn pause_follows_the_retry_schedule() {
        let d = [5.0, 12.0, 1800.0, 7200.0];
        assert_eq!(breaker_pause(&d, BREAKER_THRESHOLD), 5.0);
        assert_eq!(breaker_pause(&d, BREAKER_THRESHOLD + 1), 12.0);
        // a long retry step never pauses the probe past the cap: a CRM that is back is noticed soon
        assert_eq!(breaker_pause(&d, BREAKER_THRESHOLD + 2), BREAKER_MAX_PAUSE);
        assert!(BREAKER_MAX_PAUSE <= 15.0);
        assert_eq!(breaker_pause(&d, BREAKER_THRESHOLD + 50), BREAKER_MAX_PAUSE);
        assert_eq!(breaker_pause(&[0.05, 0.1], BREAKER_THRESHOLD + 3), 1.0);
        assert_eq!(breaker_pause(&[], BREAKER_THRESHOLD), 5.0);
    }
}

mod opening {
    use super::*;
    use std::time::Duration;

    /// Holds the write lock of the file at `p` (created private if missing) from another
    /// connection for `hold`.
    fn hold_write_lock(p: &std::path::Path, hold: Duration) -> std::thread::JoinHandle<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(p)
            .unwrap();
        let c = Connection::open(p).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; BEGIN IMMEDIATE;")
            .unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(hold);
            c.execute_batch("ROLLBACK").unwrap();
        })
    }

    #[test]
    fn a_brand_new_file_locked_for_longer_than_one_attempt_opens_once_the_lock_goes() {
        let p = tmp("open-locked-new");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::set_permissions(
            p.parent().unwrap(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let holder = hold_write_lock(&p, Duration::from_millis(1500));
        let t = Instant::now();
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(1000),
            "opened under the lock"
        );
        holder.join().unwrap();
        ob.enqueue(&ev("a.b", None, false)).unwrap();
    }

    #[test]
    fn an_opened_outbox_waits_the_full_busy_wait_not_one_attempt() {
        let p = tmp("open-then-locked");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        let holder = hold_write_lock(&p, Duration::from_millis(1500));
        let t = Instant::now();
        ob.enqueue(&ev("a.b", None, false)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(1000));
        holder.join().unwrap();
    }
}
