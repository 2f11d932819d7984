{#-
  Per source and batch (each row of the ingestion log): rows ingested, valid and
  quarantined, the quarantine reasons with their counts, and the rows from unknown
  stations. Reasons are grouped by kind: the field and rule, without the offending value,
  joined with ' | ' (a reason may itself contain ';').
  A batch the quality gate held is one row: its status is `held` until a person decides,
  then `released` or `rejected`, with who decided and when (the decision is a row of its
  own in the log, folded in here).
-#}
with log as (
    select * from {{ pinned_source('audit', 'ingestion_log') }}
),

decisions as (
    select
        batch_id,
        max_by(status, finished_at) as decision,
        max_by(decided_by, finished_at) as decided_by,
        max(finished_at) as decided_at
    from log
    where decided_by is not null
    group by batch_id
),

audit as (
    select
        l.*,
        d.decision,
        d.decided_by as decision_by,
        d.decided_at
    from log as l
    left join decisions as d on l.batch_id = d.batch_id and l.status = 'held'
    where l.decided_by is null
),

reason_counts as (
    select * from {{ ref('int_quarantine_reasons_counted') }}
),

reasons as (
    select
        _batch_id,
        array_join(
            array_agg(
                reason_kind || ': ' || cast(n_rows as varchar)
                order by n_rows desc, reason_kind asc
            ), ' | '
        ) as quarantine_reasons
    from reason_counts
    group by _batch_id
),

unknown_stations as (
    select
        _batch_id,
        count(*) as rows_unknown_station,
        array_join(array_sort(array_agg(distinct source_station_code)), ', ') as unknown_station_codes
    from (
        -- distinct keys: a row repeated within one batch counts once
        select
            _batch_id,
            source_station_code,
            event_time_utc
        from {{ ref('stg_network_a__observations') }}
        where not is_known_station
        union distinct
        select
            _batch_id,
            source_station_code,
            event_time_utc
        from {{ ref('stg_network_b__observations') }}
        where not is_known_station
    )
    group by 1
)

select
    a.source,
    a.group_number,
    a.batch_number,
    a.batch_id,
    case when a.status = 'held' then coalesce(a.decision, 'held') else a.status end as status,
    a.rows_in,
    a.rows_valid,
    a.rows_quarantined,
    round(100.0 * a.rows_quarantined / nullif(a.rows_in, 0), 2) as quarantine_rate_pct,
    r.quarantine_reasons,
    coalesce(u.rows_unknown_station, 0) as rows_unknown_station,
    u.unknown_station_codes,
    a.snapshot_id,
    a.started_at,
    a.finished_at,
    a.message,
    a.decision_by as decided_by,
    a.decided_at
from audit as a
left join reasons as r on a.batch_id = r._batch_id
left join unknown_stations as u on a.batch_id = u._batch_id
