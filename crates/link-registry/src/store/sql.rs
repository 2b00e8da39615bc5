//! What every query of the store shares: time as Unix milliseconds (how the schema stores it, the same in
//! SQLite and PostgreSQL), arguments of queries built at run time, and keyset paging.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

/// The event's timestamp as Unix milliseconds, if it is RFC 3339 UTC.
pub(crate) fn event_millis(timestamp: &str) -> Option<i64> {
    humantime::parse_rfc3339(timestamp).ok().map(millis)
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn now_millis() -> i64 {
    millis(SystemTime::now())
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (the event timestamps' format).
pub(crate) fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// An argument of a query whose filters are chosen at run time.
pub(super) enum Arg {
    Text(String),
    Int(i64),
}

pub(super) fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    args: Vec<Arg>,
) -> Query<'q, Any, AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s),
            Arg::Int(i) => q.bind(i),
        };
    }
    q
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next: Option<String>,
}

/// Keyset paging over a time column and an id column, newest first: a cursor is `<millis>.<id>` of the
/// last item shown, so a page costs the same however deep it is and rows inserted meanwhile neither
/// repeat nor vanish.
pub(super) struct Keyset {
    pub(super) at: &'static str,
    pub(super) id: &'static str,
}

impl Keyset {
    /// Ends a `SELECT … WHERE …` with the cursor's condition (when given), the order, and a limit of one
    /// row more than the page (to know whether there is a next one).
    pub(super) fn finish(
        &self,
        sql: &mut String,
        args: &mut Vec<Arg>,
        after: Option<&str>,
        limit: i64,
    ) {
        let (at, id) = (self.at, self.id);
        if let Some((t, i)) = after.and_then(parse_cursor) {
            args.push(Arg::Int(t));
            args.push(Arg::Text(i));
            let (a, b) = (args.len() - 1, args.len());
            *sql += &format!(" AND ({at} < ${a} OR ({at} = ${a} AND {id} < ${b}))");
        }
        *sql += &format!(" ORDER BY {at} DESC, {id} DESC LIMIT {}", limit + 1);
    }

    /// The page of at most `limit` of the rows a finished query returned, and the cursor to the next.
    pub(super) fn page<T>(
        &self,
        mut items: Vec<T>,
        limit: i64,
        cursor: impl Fn(&T) -> (i64, &str),
    ) -> Page<T> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let mut next = None;
        if items.len() > limit {
            items.truncate(limit);
            next = items.last().map(|l| {
                let (at, id) = cursor(l);
                format!("{at}.{id}")
            });
        }
        Page { items, next }
    }
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (at, id) = c.split_once('.')?;
    Some((at.parse().ok()?, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_continues_after_the_last_item() {
        let k = Keyset {
            at: "received_at",
            id: "webhook_id",
        };
        let (mut sql, mut args) = ("SELECT x FROM t WHERE 1=1".to_string(), vec![Arg::Int(1)]);
        k.finish(&mut sql, &mut args, Some("1700.msg_b"), 2);
        assert_eq!(
            sql,
            "SELECT x FROM t WHERE 1=1 AND (received_at < $2 OR (received_at = $2 AND webhook_id < $3)) \
             ORDER BY received_at DESC, webhook_id DESC LIMIT 3"
        );
        assert_eq!(args.len(), 3);
        let page = k.page(vec![(3, "c"), (2, "b"), (1, "a")], 2, |x| (x.0, x.1));
        assert_eq!(page.items, vec![(3, "c"), (2, "b")]);
        assert_eq!(page.next.as_deref(), Some("2.b"));
        let last = k.page(vec![(1, "a")], 2, |x| (x.0, x.1));
        assert_eq!(last.next, None);
        // A cursor that is not one is ignored (the first page), never an error or an injection.
        let mut sql = String::new();
        k.finish(&mut sql, &mut Vec::new(), Some("x'; DROP TABLE t"), 1);
        assert_eq!(sql, " ORDER BY received_at DESC, webhook_id DESC LIMIT 2");
    }
}
