//! The on-disk form of the store's records: a compact, versioned binary layout.
//!
//! Every record starts with [`FORMAT`]. Records written before this format existed are JSON and
//! start with `{`; they are still read, so an existing inbox keeps working, and are rewritten in
//! this form the next time they change. Times keep nanosecond precision (seconds + nanoseconds),
//! strings are length-prefixed UTF-8, integers are little-endian varints.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::records::{
    DeliveryRecord, DeliveryVerdict, EventRecord, EventVerdict, OutboxEntry, PlanFlag, PlanRecord, PlanSource,
    PlanState, Work,
};
use super::StoreError;
use crate::domain::audit::{AuditAction, AuditEntry, Source};
use crate::domain::review::{Headline, Risk};
use crate::verify::Fingerprint;

/// The first byte of a record in this format (never `{`, the first byte of a JSON record).
const FORMAT: u8 = 0xB1;

/// A record kept in one of the store's trees.
pub(super) trait Record: Sized + DeserializeOwned {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self, String>;
}

pub(super) fn encode<T: Record>(value: &T) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(256));
    w.0.push(FORMAT);
    value.write(&mut w);
    w.0
}

pub(super) fn decode<T: Record>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt { tree, message };
    match bytes.first() {
        Some(&FORMAT) => {
            let mut r = Reader { rest: &bytes[1..] };
            let value = T::read(&mut r).map_err(corrupt)?;
            if r.rest.is_empty() {
                Ok(value)
            } else {
                Err(corrupt(format!("{} unexpected bytes after the record", r.rest.len())))
            }
        }
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string())),
        Some(other) => Err(corrupt(format!("unknown record format 0x{other:02x}"))),
        None => Err(corrupt("empty record".into())),
    }
}

#[derive(Debug)]
pub(super) struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn int(&mut self, v: i64) {
        // Zig-zag, so small negative numbers stay short.
        self.uint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn time(&mut self, t: DateTime<Utc>) {
        self.int(t.timestamp());
        self.uint(u64::from(t.timestamp_subsec_nanos()));
    }

    /// A presence byte, then the value if there is one.
    fn opt<T>(&mut self, value: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match value {
            Some(v) => {
                self.u8(1);
                put(self, v);
            }
            None => self.u8(0),
        }
    }
}

#[derive(Debug)]
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, String> {
        let (&first, rest) = self.rest.split_first().ok_or("the record ends early")?;
        self.rest = rest;
        Ok(first)
    }

    fn uint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("an integer is longer than 64 bits".into())
    }

    fn int(&mut self) -> Result<i64, String> {
        let z = self.uint()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.uint()?).map_err(|e| e.to_string())?;
        if len > self.rest.len() {
            return Err("a string runs past the end of the record".into());
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    fn str(&mut self) -> Result<String, String> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| e.to_string())
    }

    fn time(&mut self) -> Result<DateTime<Utc>, String> {
        let secs = self.int()?;
        let nanos = u32::try_from(self.uint()?).map_err(|e| e.to_string())?;
        DateTime::from_timestamp(secs, nanos).ok_or_else(|| format!("time out of range: {secs}.{nanos}"))
    }

    /// Fields appended to a record in a later version are absent from records written before.
    fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("bad presence flag {other}")),
        }
    }

    fn opt<T>(&mut self, get: impl FnOnce(&mut Self) -> Result<T, String>) -> Result<Option<T>, String> {
        if self.flag()? {
            get(self).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Enums are stored as one byte; their order here is the format, so only ever append.
macro_rules! byte_enum {
    ($name:ident { $($variant:ident = $byte:literal),+ $(,)? }) => {
        impl $name {
            fn to_byte(self) -> u8 {
                match self { $($name::$variant => $byte),+ }
            }

            fn from_byte(b: u8) -> Result<$name, String> {
                match b {
                    $($byte => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other}", stringify!($name))),
                }
            }
        }
    };
}

byte_enum!(EventVerdict { Accepted = 0, Ignored = 1 });
byte_enum!(PlanState { Pending = 0, Snoozed = 1, Handled = 2, Resolved = 3 });
byte_enum!(PlanSource { Webhook = 0, Console = 1 });
byte_enum!(DeliveryVerdict { Accepted = 0, Duplicate = 1, Ignored = 2, Rejected = 3 });
byte_enum!(PlanFlag { TenantMismatch = 0, NotNotified = 1, ConsoleDisagrees = 2 });
byte_enum!(Work { Arrival = 0, Wake = 1 });
byte_enum!(AuditAction {
    Handled = 0,
    Snoozed = 1,
    Unsnoozed = 2,
    Resolved = 3,
    SecretSet = 4,
    SecretGenerated = 5,
    SecretRevoked = 6,
    SettingsChanged = 7,
    MuteChanged = 8,
    QuietHoursChanged = 9,
    RelayConnected = 10,
    RelayDisconnected = 11,
    ConsoleConnected = 12,
    ConsoleDisconnected = 13,
    Ignored = 14,
    Approved = 15,
    Rejected = 16,
});

impl Record for EventRecord {
    fn write(&self, w: &mut Writer) {
        w.str(&self.id);
        w.str(&self.kind);
        w.time(self.created);
        w.time(self.received_at);
        w.u8(self.verdict.to_byte());
        w.str(&self.fingerprint.0);
        w.str(&self.plan_id);
        w.str(&self.run_id);
        w.str(&self.organization_id);
        w.opt(self.outbox_seq, Writer::uint);
        w.str(self.payload.get());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, String> {
        Ok(EventRecord {
            id: r.str()?,
            kind: r.str()?,
            created: r.time()?,
            received_at: r.time()?,
            verdict: EventVerdict::from_byte(r.u8()?)?,
            fingerprint: Fingerprint(r.str()?),
            plan_id: r.str()?,
            run_id: r.str()?,
            organization_id: r.str()?,
            outbox_seq: r.opt(Reader::uint)?,
            payload: serde_json::value::RawValue::from_string(r.str()?).map_err(|e| e.to_string())?,
        })
    }
}

impl Record for PlanRecord {
    fn write(&self, w: &mut Writer) {
        w.str(&self.plan_id);
        w.str(&self.event_id);
        w.str(&self.run_id);
        w.str(&self.organization_id);
        w.time(self.created);
        w.time(self.received_at);
        w.u8(self.state.to_byte());
        w.opt(self.snoozed_until, Writer::time);
        w.opt(self.notified_at, Writer::time);
        w.opt(self.escalated_at, Writer::time);
        w.opt(self.handled_at, Writer::time);
        w.u8(u8::from(self.held));
        // Appended later: absent from older records.
        w.uint(self.flags.len() as u64);
        for f in &self.flags {
            w.u8(f.to_byte());
        }
        // Appended in schema 3: absent from older records.
        w.u8(self.source.to_byte());
        w.opt(self.console_status.as_deref(), Writer::str);
        w.opt(self.decided_by.as_deref(), Writer::str);
        w.opt(self.resolved_at, Writer::time);
        // Appended in schema 4: absent from older records.
        w.opt(self.snoozed_by.as_deref(), Writer::str);
        w.opt(self.decision_id.as_deref(), Writer::str);
        w.opt(self.snoozed_at, Writer::time);
        // Appended in schema 5: absent from older records.
        w.opt(self.snoozed_source.as_ref(), |w, s| w.str(&s.to_string()));
        w.opt(self.headline.title.as_deref(), Writer::str);
        w.opt(self.headline.environment.as_deref(), Writer::str);
        w.opt(self.headline.risk.map(Risk::as_str), Writer::str);
        w.opt(self.headline.service.as_deref(), Writer::str);
        w.opt(self.decision_comment.as_deref(), Writer::str);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, String> {
        let mut plan = PlanRecord {
            plan_id: r.str()?,
            event_id: r.str()?,
            run_id: r.str()?,
            organization_id: r.str()?,
            created: r.time()?,
            received_at: r.time()?,
            state: PlanState::from_byte(r.u8()?)?,
            snoozed_until: r.opt(Reader::time)?,
            notified_at: r.opt(Reader::time)?,
            escalated_at: r.opt(Reader::time)?,
            handled_at: r.opt(Reader::time)?,
            held: r.flag()?,
            flags: if r.at_end() {
                Vec::new()
            } else {
                let n = r.uint()?;
                (0..n).map(|_| r.u8().and_then(PlanFlag::from_byte)).collect::<Result<_, _>>()?
            },
            source: PlanSource::Webhook,
            console_status: None,
            decided_by: None,
            resolved_at: None,
            snoozed_by: None,
            decision_id: None,
            snoozed_at: None,
            snoozed_source: None,
            headline: Headline::default(),
            decision_comment: None,
        };
        if !r.at_end() {
            plan.source = PlanSource::from_byte(r.u8()?)?;
            plan.console_status = r.opt(Reader::str)?;
            plan.decided_by = r.opt(Reader::str)?;
            plan.resolved_at = r.opt(Reader::time)?;
        }
        if !r.at_end() {
            plan.snoozed_by = r.opt(Reader::str)?;
            plan.decision_id = r.opt(Reader::str)?;
            plan.snoozed_at = r.opt(Reader::time)?;
        }
        if !r.at_end() {
            plan.snoozed_source = match r.opt(Reader::str)? {
                Some(text) => Some(Source::parse(&text).ok_or_else(|| format!("unknown snooze source `{text}`"))?),
                None => None,
            };
            plan.headline.title = r.opt(Reader::str)?;
            plan.headline.environment = r.opt(Reader::str)?;
            // A risk this build does not know reads as unknown.
            plan.headline.risk = r.opt(Reader::str)?.and_then(|s| Risk::parse(&s));
            plan.headline.service = r.opt(Reader::str)?;
            plan.decision_comment = r.opt(Reader::str)?;
        }
        Ok(plan)
    }
}

impl Record for AuditEntry {
    fn write(&self, w: &mut Writer) {
        w.time(self.at);
        w.str(&self.who);
        w.u8(self.action.to_byte());
        w.opt(self.plan_id.as_deref(), Writer::str);
        w.str(&self.detail);
        w.str(&self.source.to_string());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, String> {
        Ok(AuditEntry {
            at: r.time()?,
            who: r.str()?,
            action: AuditAction::from_byte(r.u8()?)?,
            plan_id: r.opt(Reader::str)?,
            detail: r.str()?,
            source: {
                let text = r.str()?;
                Source::parse(&text).ok_or_else(|| format!("unknown audit source `{text}`"))?
            },
        })
    }
}

impl Record for OutboxEntry {
    fn write(&self, w: &mut Writer) {
        w.uint(self.seq);
        w.str(&self.event_id);
        w.str(&self.plan_id);
        w.time(self.enqueued_at);
        w.uint(u64::from(self.attempts));
        // Appended later: absent from older records, which are all arrivals.
        w.u8(self.work.to_byte());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, String> {
        Ok(OutboxEntry {
            seq: r.uint()?,
            event_id: r.str()?,
            plan_id: r.str()?,
            enqueued_at: r.time()?,
            attempts: u32::try_from(r.uint()?).unwrap_or(u32::MAX),
            work: if r.at_end() { Work::Arrival } else { Work::from_byte(r.u8()?)? },
        })
    }
}

impl Record for DeliveryRecord {
    fn write(&self, w: &mut Writer) {
        w.time(self.at);
        w.opt(self.event_id.as_deref(), Writer::str);
        w.u8(self.verdict.to_byte());
        w.uint(u64::from(self.status));
        w.str(&self.code);
        w.str(&self.reason);
        w.opt(self.fingerprint.as_ref().map(|f| f.0.as_str()), Writer::str);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, String> {
        Ok(DeliveryRecord {
            at: r.time()?,
            event_id: r.opt(Reader::str)?,
            verdict: DeliveryVerdict::from_byte(r.u8()?)?,
            status: u16::try_from(r.uint()?).map_err(|e| e.to_string())?,
            code: r.str()?,
            reason: r.str()?,
            fingerprint: r.opt(Reader::str)?.map(Fingerprint),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plan() -> PlanRecord {
        let t = DateTime::from_timestamp(1_779_278_400, 123_456_789).unwrap();
        PlanRecord {
            plan_id: "plan_ü".into(),
            event_id: "evt_1".into(),
            run_id: "run_1".into(),
            organization_id: "org_abc".into(),
            created: t,
            received_at: t,
            state: PlanState::Snoozed,
            snoozed_until: Some(t),
            notified_at: None,
            escalated_at: Some(DateTime::from_timestamp(-5, 0).unwrap()),
            handled_at: None,
            held: true,
            flags: vec![PlanFlag::TenantMismatch],
            source: PlanSource::Console,
            console_status: Some("approved".into()),
            decided_by: Some("alice@example.com".into()),
            resolved_at: Some(t),
            snoozed_by: Some("bob@laptop-2".into()),
            decision_id: Some("act_0123456789abcdef".into()),
            snoozed_at: Some(t),
            snoozed_source: Some(Source::Team("bob_laptop-2".into())),
            headline: Headline {
                title: Some("Roll back checkout".into()),
                environment: Some("prod-eu".into()),
                risk: Some(Risk::High),
                service: Some("checkout".into()),
            },
            decision_comment: Some("looks right".into()),
        }
    }

    /// Each later schema appended fields to a plan record; a record cut where an older version
    /// ended reads back with those fields at their defaults.
    #[test]
    fn plans_written_by_older_versions_read_with_the_appended_fields_absent() {
        let none = PlanRecord {
            flags: Vec::new(),
            source: PlanSource::Webhook,
            console_status: None,
            decided_by: None,
            resolved_at: None,
            snoozed_by: None,
            decision_id: None,
            snoozed_at: None,
            snoozed_source: None,
            headline: Headline::default(),
            decision_comment: None,
            ..plan()
        };
        // (bytes cut from the end, what they held)
        for (cut, held) in [
            (6, "snoozed_source, the headline and the decision's comment (schema 5)"),
            (9, "and snoozed_by, decision_id, snoozed_at (schema 4)"),
            (13, "and source, console_status, decided_by, resolved_at (schema 3)"),
            (14, "and the flag count"),
        ] {
            let mut old = encode(&none);
            old.truncate(old.len() - cut);
            assert_eq!(decode::<PlanRecord>("plans", &old).unwrap(), none, "without {held}");
        }
        let p = none.clone();
        let e = OutboxEntry {
            seq: 3,
            event_id: "e".into(),
            plan_id: "p".into(),
            enqueued_at: p.created,
            attempts: 2,
            work: Work::Wake,
        };
        assert_eq!(decode::<OutboxEntry>("outbox", &encode(&e)).unwrap(), e);
        let mut old = encode(&e);
        old.pop();
        assert_eq!(decode::<OutboxEntry>("outbox", &old).unwrap().work, Work::Arrival);
    }

    #[test]
    fn records_round_trip_with_nanosecond_times() {
        let p = plan();
        assert_eq!(decode::<PlanRecord>("plans", &encode(&p)).unwrap(), p);
        let d = DeliveryRecord {
            at: p.created,
            event_id: Some("evt_1".into()),
            verdict: DeliveryVerdict::Duplicate,
            status: 200,
            code: "duplicate".into(),
            reason: "seen".into(),
            fingerprint: Some(Fingerprint("0123456789ab".into())),
        };
        assert_eq!(decode::<DeliveryRecord>("deliveries", &encode(&d)).unwrap(), d);
        let snoozed =
            PlanRecord { snoozed_by: Some("alice@l7".into()), decision_id: Some("act_1".into()), ..p.clone() };
        assert_eq!(decode::<PlanRecord>("plans", &encode(&snoozed)).unwrap(), snoozed);
        for source in [crate::domain::audit::Source::Team("bob_l2".into()), crate::domain::audit::Source::Notification]
        {
            let a = AuditEntry {
                at: p.created,
                who: "alice@laptop-7".into(),
                action: AuditAction::Snoozed,
                plan_id: Some("plan_1".into()),
                detail: "until 15:00".into(),
                source,
            };
            assert_eq!(decode::<AuditEntry>("audit", &encode(&a)).unwrap(), a);
        }
    }

    #[test]
    fn json_records_from_earlier_versions_are_still_read() {
        let p = plan();
        let json = serde_json::to_vec(&p).unwrap();
        assert_eq!(decode::<PlanRecord>("plans", &json).unwrap(), p);
    }

    #[test]
    fn a_damaged_record_is_a_clear_error_naming_its_tree() {
        let mut bytes = encode(&plan());
        // Cut right after the presence byte of the last field (a string and its length byte).
        bytes.truncate(bytes.len() - "looks right".len() - 1);
        let err = decode::<PlanRecord>("plans", &bytes).unwrap_err().to_string();
        assert!(err.contains("`plans`") && err.contains("ends early"), "{err}");
        // The format byte, then a first string said to be 50 bytes long, of which 3 are there.
        let err = decode::<PlanRecord>("plans", &[FORMAT, 50, b'a', b'b', b'c']).unwrap_err().to_string();
        assert!(err.contains("`plans`") && err.contains("runs past the end of the record"), "{err}");
        let err = decode::<PlanRecord>("plans", &[0x07, 1, 2]).unwrap_err().to_string();
        assert!(err.contains("unknown record format 0x07"), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut tagged = vec![FORMAT];
            tagged.extend_from_slice(&bytes);
            let _ = decode::<PlanRecord>("plans", &tagged);
            let _ = decode::<EventRecord>("events", &tagged);
            let _ = decode::<DeliveryRecord>("deliveries", &tagged);
            let _ = decode::<OutboxEntry>("outbox", &tagged);
        }

        #[test]
        fn integers_round_trip(v in any::<u64>(), i in any::<i64>()) {
            let mut w = Writer(Vec::new());
            w.uint(v);
            w.int(i);
            let mut r = Reader { rest: &w.0 };
            prop_assert_eq!(r.uint().unwrap(), v);
            prop_assert_eq!(r.int().unwrap(), i);
        }
    }
}
